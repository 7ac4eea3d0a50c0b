"""Which host runs which topology node: pinned nodes where `hosts.place` says, the rest
by a greedy placer, each with the reason, before any host is touched.

The rules, in order: a node with GPUs goes only to a host with GPUs; a node's CPU and
memory budget (its `cpu` and `mem_mb` limits; 0 = none) must fit what the host has
left; among the hosts it fits, the one where it adds the fewest cross-host links (each
is a tunnel and the LAN's round trip), then the least loaded. Hosts are filled to an
equal share of the nodes at most (balanced set-up and load), unless a node fits
nowhere else. Nodes are taken in the order a region grows from the pinned ones
(`_order`), so whole subtrees land together and the hosts are cut where few links are
(edge_mesh over 3 hosts: 44 links carried of 245, where breadth first carried 140).
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.core.config import fail
from harness.emulation.topology import Node, Topology


@dataclass(frozen=True)
class HostInfo:
    """What a host offers (0 CPUs or memory: not limited)."""

    name: str
    cpus: float = 0.0
    mem_mb: int = 0
    gpus: int = 0
    address: str = ""


@dataclass
class Placement:
    host_of: dict[str, str]  # node -> host
    why: dict[str, str]  # node -> the reason
    cross_links: list[str] = field(default_factory=list)  # links whose ends are apart

    def nodes_on(self, host: str) -> list[str]:
        return [n for n, h in self.host_of.items() if h == host]

    def describe(self, hosts: list[HostInfo]) -> dict:
        """The summary's `hosts.placement`."""
        return {"hosts": {h.name: {"address": h.address, "cpus": h.cpus, "mem_mb": h.mem_mb,
                                   "gpus": h.gpus, "nodes": self.nodes_on(h.name)}
                          for h in hosts},
                "nodes": {n: {"host": h, "why": self.why[n]} for n, h in self.host_of.items()},
                "cross_links": self.cross_links}


def needs_gpu(node: Node) -> bool:
    return node.gpus == "all" or bool(node.gpus)


def gpu_fits(node: Node, host: HostInfo) -> bool:
    if node.gpus == "all":
        return host.gpus > 0
    return int(node.gpus or 0) <= host.gpus


class _Budget:
    def __init__(self, host: HostInfo) -> None:
        self.host, self.cpu, self.mem, self.count = host, 0.0, 0, 0

    def fits(self, node: Node) -> str:
        """'' if `node` fits what is left, else why not."""
        if not gpu_fits(node, self.host):
            return f"needs gpus={node.gpus}, has {self.host.gpus}"
        if self.host.cpus and self.cpu + node.cpu > self.host.cpus + 1e-9:
            return f"cpu {node.cpu} > {self.host.cpus - self.cpu:g} left"
        if self.host.mem_mb and self.mem + node.mem_mb > self.host.mem_mb:
            return f"mem_mb {node.mem_mb} > {self.host.mem_mb - self.mem} left"
        return ""

    def take(self, node: Node) -> None:
        self.cpu += node.cpu
        self.mem += node.mem_mb
        self.count += 1


def place(topo: Topology, hosts: Sequence[HostInfo], pinned: dict[str, str],
          key: str = "hosts.place") -> Placement:
    """Every node of `topo` on one of `hosts`; a ConfigError naming the key otherwise."""
    if not hosts:
        fail(key, pinned, "no hosts to place nodes on")
    by_name = {h.name: h for h in hosts}
    nodes = {n.name: n for n in topo.nodes}
    budgets = {h.name: _Budget(h) for h in hosts}
    host_of: dict[str, str] = {}
    why: dict[str, str] = {}
    for node, host in pinned.items():
        if node not in nodes:
            fail(f"{key}.{node}", host, f"unknown node (nodes: {', '.join(sorted(nodes))})")
        if host not in by_name:
            fail(f"{key}.{node}", host, f"unknown host (hosts: {', '.join(sorted(by_name))})")
        no = budgets[host].fits(nodes[node])
        if no:
            fail(f"{key}.{node}", host, f"does not fit there: {no}")
        budgets[host].take(nodes[node])
        host_of[node], why[node] = host, "pinned by hosts.place"
    share = math.ceil(len(nodes) / len(hosts))
    nbrs: dict[str, list[str]] = {n: [] for n in nodes}
    for lk in topo.links:
        nbrs[lk.a].append(lk.b)
        nbrs[lk.b].append(lk.a)
    for name in _order(topo, list(host_of), nbrs):
        node = nodes[name]
        fits = {h: budgets[h].fits(node) for h in by_name}
        ok = [h for h, no in fits.items() if not no]
        if not ok:
            reasons = "; ".join(f"{h}: {no}" for h, no in fits.items())
            i = [n.name for n in topo.nodes].index(name)
            fail(f"topology.nodes[{i}]", name, f"fits on no host ({reasons})")
        roomy = [h for h in ok if budgets[h].count < share] or ok

        def cost(h: str, name: str = name) -> tuple[int, int, float, int]:
            cross = sum(1 for o in nbrs[name] if o in host_of and host_of[o] != h)
            b = budgets[h]
            return cross, b.count, b.cpu, list(by_name).index(h)

        best = min(roomy, key=cost)
        cross = cost(best)[0]
        parts = []
        if needs_gpu(node):
            parts.append("has GPUs")
        if len(ok) < len(by_name):
            parts.append(f"fits ({len(ok)} of {len(by_name)} hosts)")
        parts.append(f"adds {cross} cross-host link{'s' * (cross != 1)}")
        parts.append(f"load {budgets[best].count} node{'s' * (budgets[best].count != 1)}")
        budgets[best].take(node)
        host_of[name], why[name] = best, ", ".join(parts)
    cross_links = [lk.name for lk in topo.links if host_of[lk.a] != host_of[lk.b]]
    return Placement({n: host_of[n] for n in nodes}, {n: why[n] for n in nodes}, cross_links)


def _hanging(rank: dict[str, int], nbrs: dict[str, list[str]], keep: set[str]) -> dict[str, str]:
    """node -> the node it hangs from, for the trees hanging off the topology's core:
    leaves peeled in turn (a sensor from its device, then the device, now a leaf, from its
    edge server). `keep` (the pinned nodes) are never peeled."""
    links = {n: set(nbrs[n]) - {n} for n in nbrs}
    deg = {n: len(x) for n, x in links.items()}
    parent: dict[str, str] = {}
    leaves = deque(sorted((n for n in deg if deg[n] == 1 and n not in keep), key=rank.get))
    while leaves:
        n = leaves.popleft()
        if deg[n] != 1:
            continue
        p = next(o for o in links[n] if o not in parent)
        parent[n], deg[n] = p, 0
        deg[p] -= 1
        if deg[p] == 1 and p not in keep:
            leaves.append(p)
    return parent


def _order(topo: Topology, start: list[str], nbrs: dict[str, list[str]]) -> list[str]:
    """Unpinned nodes in the order a region grows, each node followed by the tree hanging
    off it (`_hanging`), so a device lands with its sensors and an edge server with its
    devices. Over the core (what peeling leaves), the next node is the one with the most
    links to nodes taken less its links to nodes not taken, ties in topology order (greedy
    graph growing); from the pinned nodes, then from the first node not taken."""
    rank = {n.name: i for i, n in enumerate(topo.nodes)}
    parent = _hanging(rank, nbrs, set(start))
    kids: dict[str, list[str]] = {n: [] for n in rank}
    for n in sorted(parent, key=rank.get):
        kids[parent[n]].append(n)
    core = {n: [o for o in nbrs[n] if o not in parent] for n in rank if n not in parent}
    score = {n: -len(core[n]) for n in core}
    taken: set[str] = set()
    heap: list[tuple[int, int, str]] = []
    out: list[str] = []

    def take(n: str, emit: bool) -> None:
        taken.add(n)
        todo = [n]
        while todo:  # n, then its tree depth first
            x = todo.pop()
            if emit or x != n:
                out.append(x)
            todo.extend(reversed(kids[x]))
        for o in core[n]:
            if o not in taken:
                score[o] += 2  # a link to a taken node, no longer one to an untaken node
                heapq.heappush(heap, (-score[o], rank[o], o))

    for n in start:
        take(n, emit=False)
    seeds = iter(sorted(core, key=rank.get))
    while len(taken) < len(core):
        while heap and (heap[0][2] in taken or -heap[0][0] != score[heap[0][2]]):
            heapq.heappop(heap)  # taken meanwhile, or a stale score
        take(heapq.heappop(heap)[2] if heap else next(x for x in seeds if x not in taken),
             emit=True)
    return out
