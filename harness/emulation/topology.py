"""Topologies as pure data: nodes, links, addresses and routes, no running network.

Builders in `topologies/` return a `Topology`; the emulation backend brings it
up. Keeping it pure lets tests check addressing and routing without root.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from harness.core.config import ConfigError, LinkProps, check_range, fail

ROLES = ("sensor", "device", "edge", "cloud", "host")


@dataclass
class Node:
    name: str
    role: str = "host"  # sensor | device | edge | cloud | host
    cpu: float = 0.0  # CPU share in cores (0.5 = half a core); 0 = unlimited
    mem_mb: int = 0  # memory limit; 0 = unlimited
    # ONNX Runtime execution providers for stages on this node, in order of preference;
    # empty = CPU, or CUDA then CPU on a node with GPUs
    providers: list[str] = field(default_factory=list)
    gpus: int | str = 0  # GPUs passed through to the node: a count, or "all"

    def validate(self, key: str) -> None:
        if not self.name or not self.name.replace("_", "").isalnum() or len(self.name) > 8:
            fail(f"{key}.name", self.name, "must be 1-8 letters, digits or _")
        if self.role not in ROLES:
            fail(f"{key}.role", self.role, f"unknown role (one of {', '.join(ROLES)})")
        check_range(f"{key}.cpu", self.cpu, 0, 1024)
        check_range(f"{key}.mem_mb", self.mem_mb, 0, 10**7)
        if self.gpus != "all" and (isinstance(self.gpus, bool) or not isinstance(self.gpus, int)
                                   or self.gpus < 0):
            fail(f"{key}.gpus", self.gpus, "must be a count >= 0 or 'all'")
        if not isinstance(self.providers, list) or not all(isinstance(p, str)
                                                           for p in self.providers):
            fail(f"{key}.providers", self.providers, "must be a list of execution providers")
        if not self.providers:
            self.providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if self.gpus
                              else ["CPUExecutionProvider"])


@dataclass
class Link:
    a: str
    b: str
    name: str = ""  # default "a-b"
    props: LinkProps = field(default_factory=LinkProps)  # overrides of the network defaults
    trace_fwd: str | None = None  # Mahimahi trace for a -> b bandwidth
    trace_rev: str | None = None  # Mahimahi trace for b -> a bandwidth
    # the network between two hosts is the link: carried, never shaped, and measured by
    # the fidelity check (hosts=emulated or ray, its ends on different hosts)
    real: bool = False

    def __post_init__(self) -> None:
        if not self.name:
            self.name = f"{self.a}-{self.b}"

    def shaped_props(self, base: LinkProps) -> LinkProps:
        """What the shaper applies: these properties over the network's defaults; nothing
        on a real link (queue length aside, which is the shaper's own)."""
        if self.real:
            return LinkProps.unshaped(base.queue_pkts)
        return self.props.over(base)


@dataclass
class Topology:
    name: str
    nodes: list[Node]
    links: list[Link]

    def validate(self, key: str = "topology") -> None:
        seen: set[str] = set()
        for i, node in enumerate(self.nodes):
            node.validate(f"{key}.nodes[{i}]")
            if node.name in seen:
                fail(f"{key}.nodes[{i}].name", node.name, "duplicate node name")
            seen.add(node.name)
        if not self.nodes:
            fail(f"{key}.nodes", [], "a topology needs at least one node")
        names: set[str] = set()
        pairs: set[frozenset[str]] = set()
        for i, link in enumerate(self.links):
            for end in ("a", "b"):
                if getattr(link, end) not in seen:
                    fail(f"{key}.links[{i}].{end}", getattr(link, end), "unknown node")
            if link.a == link.b:
                fail(f"{key}.links[{i}].b", link.b, "a link needs two different nodes")
            pair = frozenset((link.a, link.b))
            if pair in pairs:
                fail(f"{key}.links[{i}]", link.name, "duplicate link between the same nodes")
            pairs.add(pair)
            if link.name in names or link.name in seen:
                fail(f"{key}.links[{i}].name", link.name, "duplicate name")
            names.add(link.name)
            link.props.validate(f"{key}.links[{i}]")
            if link.real and (link.props.set_fields() or link.trace_fwd or link.trace_rev):
                fail(f"{key}.links[{i}].real", True, "a real link is not shaped: it takes no "
                     "properties or traces (the hosts' network is what it is)")

    # -- lookups ---------------------------------------------------------------

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def link(self, name: str) -> Link:
        for link in self.links:
            if link.name == name:
                return link
        raise KeyError(name)

    def find_link(self, a: str, b: str) -> Link | None:
        for link in self.links:
            if {link.a, link.b} == {a, b}:
                return link
        return None

    def links_of(self, node: str) -> list[Link]:
        return [lk for lk in self.links if node in (lk.a, lk.b)]

    # -- addressing and routing --------------------------------------------------

    def addresses(self) -> dict[str, str]:
        """One IPv4 address per node (10.0.0.0/16), set as /32 on each of its interfaces."""
        out = {}
        for i, node in enumerate(self.nodes):
            out[node.name] = f"10.0.{i // 254}.{i % 254 + 1}"
        if len(self.nodes) > 254 * 256:
            raise ConfigError(f"topology.nodes={len(self.nodes)}: at most 65024 nodes")
        return out

    def interfaces(self) -> dict[tuple[str, str], str]:
        """(node, link name) -> interface name in the node's namespace, e.g. h1-eth0."""
        out: dict[tuple[str, str], str] = {}
        count: dict[str, int] = {}
        for link in self.links:
            for end in (link.a, link.b):
                k = count.get(end, 0)
                out[(end, link.name)] = f"{end}-eth{k}"
                count[end] = k + 1
        return out

    def macs(self) -> dict[tuple[str, str], str]:
        """(node, link name) -> a fixed, locally administered MAC for that interface.

        Fixed MACs let every node hold permanent neighbour entries: no ARP in any
        measurement, and a crashed peer shows as a timeout, not as "no route to host".
        """
        index = {n.name: i for i, n in enumerate(self.nodes)}
        out = {}
        for li, link in enumerate(self.links):
            for end in (link.a, link.b):
                ni = index[end]
                out[(end, link.name)] = (f"02:48:{ni >> 8:02x}:{ni & 255:02x}:"
                                         f"{li >> 8:02x}:{li & 255:02x}")
        return out

    def adjacency(self, base: LinkProps) -> dict[str, list[tuple[str, str, float]]]:
        """node -> [(link name, neighbour, one-way delay ms)], sorted by link name."""
        adj: dict[str, list[tuple[str, str, float]]] = {n.name: [] for n in self.nodes}
        for link in sorted(self.links, key=lambda lk: lk.name):
            delay = link.shaped_props(base).delay_ms or 0.0
            adj[link.a].append((link.name, link.b, delay))
            adj[link.b].append((link.name, link.a, delay))
        return adj

    def next_hops(self, src: str, base: LinkProps,
                  adj: dict[str, list[tuple[str, str, float]]] | None = None) -> dict[str, str]:
        """Destination -> neighbour to forward to, by least one-way delay then hops.

        Pass `adjacency(base)` when routing every node: built once, routing all nodes
        costs O(N (N + L) log N), not a scan of every link per node visited."""
        adj = adj if adj is not None else self.adjacency(base)
        dist: dict[str, tuple[float, int]] = {src: (0.0, 0)}
        first: dict[str, str] = {}
        heap: list[tuple[float, int, str, str]] = [(0.0, 0, src, "")]
        while heap:
            d, h, node, hop = heapq.heappop(heap)
            if (d, h) > dist.get(node, (float("inf"), 0)):
                continue
            if hop:
                first.setdefault(node, hop)
            for _name, other, delay in adj[node]:
                cand = (d + delay, h + 1)
                if cand < dist.get(other, (float("inf"), 0)):
                    dist[other] = cand
                    heapq.heappush(heap, (cand[0], cand[1], other, hop or other))
        return first

    def path_links(self, a: str, b: str, base: LinkProps) -> list[str]:
        """The links a packet from a to b crosses: each node forwards by its own
        `next_hops` (least one-way delay, ties to fewest links), which is what the kernel
        routes the wiring installs do, so a prediction made on this path is the one
        traffic takes ([] if a == b; ValueError if b cannot be reached)."""
        adj = self.adjacency(base)
        link = {(n, other): name for n, nbrs in adj.items() for name, other, _ in nbrs}
        out, n = [], a
        while n != b:
            hop = self.next_hops(n, base, adj).get(b)
            if hop is None or len(out) > len(self.nodes):
                raise ValueError(f"no path from {a} to {b}")
            out.append(link[(n, hop)])
            n = hop
        return out
