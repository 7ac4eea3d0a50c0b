"""Bringing a topology's links and addresses up in bulk, with no shell in between.

Why batches: one process per object (a shell per node running ethtool, ip, tc
and sysctl, an ethtool per wire end) took 11 s for 210 nodes. Now all veth
pairs come from one `ip -batch` run on the host, each end created straight in
its namespace (`netns` on both ends: nothing is ever created in the root
namespace); each node gets one `ip -batch` (addresses, neighbours, routes) and
one `tc -batch` (htb and its leaf), nodes in parallel; its sysctls and offloads
are set from this process, which also starts both batches inside the namespace
(`EmuNode.net_setup`, `harness.emulation.netdev`).

Why no shell: config values (node and link names, addresses, `tcp_cc`) reach only
argument lists, sysctl files and batch text whose every word is checked
(`batch`), so no value can become a second command, a comment or a redirection.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.core.config import LinkProps
from harness.emulation.tc import DirState, EmulationError, htb_cmds, run
from harness.emulation.topology import Topology

if TYPE_CHECKING:
    from harness.emulation.backends.base import EmuNode
    from harness.emulation.shapers.base import Shaper
    from harness.emulation.share import Tunnel

SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    # No IPv6: router solicitations and ND would add unscheduled traffic to every link.
    "net.ipv6.conf.all.disable_ipv6": "1",
    "net.ipv6.conf.default.disable_ipv6": "1",
}
WORD = re.compile(r"[\w.:/%+@-]+", re.ASCII)
# Nodes set up at once: more only queue on the kernel's rtnl lock (16 were slower than 4
# here, on 2 cores); a node's start waits more (for its shell), so backends take twice this.
WORKERS = max(4, 2 * (os.cpu_count() or 1))


def batch(cmds: list[list[str]]) -> str:
    """Text for `ip -batch -` / `tc -batch -`: one command a line. Every word must be a
    plain token (no space, quote, `#` or newline), so it stays one word of its command."""
    for cmd in cmds:
        for word in cmd:
            if not WORD.fullmatch(word):
                raise EmulationError(f"refusing batch word {word!r} in {' '.join(cmd)[:120]}")
    return "".join(" ".join(cmd) + "\n" for cmd in cmds)


@dataclass
class NodeSetup:
    """Everything one node needs once its interfaces exist."""

    sysctls: dict[str, str]
    plain: list[str]  # devices whose offloads go off
    ip: list[list[str]] = field(default_factory=list)  # `ip -batch` commands
    tc: list[list[str]] = field(default_factory=list)  # `tc -batch` commands


class Wiring:
    """The topology's names, addresses and routes, computed once for every node."""

    def __init__(self, topo: Topology, base: LinkProps,
                 tunnels: dict[str, Tunnel] | None = None) -> None:
        """`tunnels`: the links a host split carries to other hosts (link -> tunnel)."""
        self.topo = topo
        self.tunnels = tunnels or {}
        self.ips, self.devs, self.macs = topo.addresses(), topo.interfaces(), topo.macs()
        self.adj = topo.adjacency(base)
        self.base = base
        self.link_to = {(a, other): name for a, nbrs in self.adj.items()
                        for name, other, _ in nbrs}
        self.a_end = {lk.name: lk.a for lk in topo.links}
        self.cover = cover(len(topo.nodes))
        self.names = sorted(n.name for n in topo.nodes)
        self._hops: dict[str, dict[str, str]] = {}

    def hops(self, name: str) -> dict[str, str]:
        """`topo.next_hops(name)`, each search made once. A node on one link (a sensor, a
        device at the end of its edge's tree: most nodes of a large topology) forwards
        everything over it, so its table is its neighbour's destinations, not a search of
        its own: the searches were O(N^2) in all (3 of the 17 s of 1,130 nodes' set-up)."""
        nbrs = self.adj[name]
        if len(nbrs) == 1 and len(self.adj[nbrs[0][1]]) > 1:  # not kept: N^2 entries in all
            nbr = nbrs[0][1]
            got = {dest: nbr for dest in self.hops(nbr) if dest != name}
            got[nbr] = nbr
            return got
        if name not in self._hops:
            self._hops[name] = self.topo.next_hops(name, self.base, self.adj)
        return self._hops[name]

    def veths(self, ns_of: dict[str, str], shaper: Shaper) -> list[list[str]]:
        """`ip link add` commands for every link: each end named, addressed and placed in its
        namespace (a node's by PID; with the userspace shaper, the wire end in the wire's)."""
        cmds = []
        for i, link in enumerate(self.topo.links):
            ends = [(end, node, self.devs[(node, link.name)], self.macs[(node, link.name)],
                     ns_of[node]) for end, node in zip("ab", (link.a, link.b), strict=True)
                    if node in ns_of]  # a host's share: the ends on this host
            tunnel = self.tunnels.get(link.name)
            mtu = ["mtu", str(tunnel.mtu)] if tunnel else []
            if shaper.netem and len(ends) == 2:  # the veth runs straight from node to node
                (_, _, da, ma, na), (_, _, db, mb, nb) = ends
                cmds.append(["link", "add", "name", da, "address", ma, "netns", na,
                             "type", "veth", "peer", "name", db, "address", mb, "netns", nb])
                continue
            if shaper.netem and ends:
                raise EmulationError(f"link {link.name}: a link between hosts needs the "
                                     "userspace shaper (netem here is not built yet)")
            for end, _node, dev, mac, ns in ends:
                peer, wire = shaper.peer(i, end, "")
                cmds.append(["link", "add", "name", dev, "address", mac, *mtu, "netns", ns,
                             "type", "veth", "peer", "name", peer, *mtu, "netns", wire])
        return cmds

    def tunnels_cmds(self, shaper: Shaper, here: set[str]) -> list[list[str]]:
        """`ip` commands making each carried link's tunnel device from this process's
        namespace (where the hosts' network is) in the wire namespace, under the name of
        the far end's peer: the delay line bridges it as it would that peer."""
        cmds = []
        for i, link in enumerate(self.topo.links):
            tunnel = self.tunnels.get(link.name)
            if tunnel is None:
                continue
            far = "b" if link.a in here else "a"
            name, wire = shaper.peer(i, far, "")
            cmds.append(tunnel.device_cmd(name, wire))
        return cmds

    def node(self, name: str, netem: bool, dirs: dict[str, tuple[DirState, DirState]],
             tcp_cc: str = "") -> NodeSetup:
        """One node's sysctls, offloads, addresses, neighbours, routes and qdiscs (pure)."""
        ip = self.ips[name]
        setup = NodeSetup({**SYSCTLS, **({"net.ipv4.tcp_congestion_control": tcp_cc}
                                          if tcp_cc else {})}, [], [["link", "set", "lo", "up"]])
        for link_name, other, _ in self.adj[name]:
            dev = self.devs[(name, link_name)]
            fwd, rev = dirs[link_name]
            mine = fwd if self.a_end[link_name] == name else rev  # this end sends `mine`
            setup.plain.append(dev)
            setup.ip += [["addr", "add", f"{ip}/32", "dev", dev], ["link", "set", dev, "up"],
                         ["neigh", "replace", self.ips[other], "lladdr",
                          self.macs[(other, link_name)], "dev", dev, "nud", "permanent"]]
            setup.tc += htb_cmds(dev, mine, netem)
        setup.ip += self.routes(name)
        return setup

    def routes(self, name: str) -> list[list[str]]:
        """The node's routes, folded: a /32 per neighbour and per destination whose next hop
        is not the most common one, and the rest through the few prefixes that cover
        exactly the topology's addresses (`cover`). A /32 per destination is N² routes in
        all, the one part of set-up growing with the square (44,100 for 210 nodes: 0.4 s
        more there; 4,526 folded); longest-prefix match forwards every node's address
        exactly as before, and an address no node has matches no route (unreachable at
        once, as before, rather than looping)."""
        hops = self.hops(name)
        direct = {other: self.link_to[(name, other)] for _, other, _ in self.adj[name]}
        far = Counter(hop for dest, hop in hops.items() if hop != dest)
        main = min(far, key=lambda h: (-far[h], h)) if far else None
        out = []
        for dest in self.names:
            ip = f"{self.ips[dest]}/32"
            # a neighbour too is reached by the path rule: over the direct link only when
            # that is the least-delay path (a slow direct link may lose to two fast ones)
            if dest in direct and hops.get(dest) == dest:
                out.append(["route", "replace", ip, "dev", self.devs[(name, direct[dest])]])
            elif dest in hops and hops[dest] != main:
                out.append(["route", "replace", ip, "via", self.ips[hops[dest]],
                            "dev", self.devs[(name, direct[hops[dest]])], "onlink"])
            elif dest not in hops and dest != name and main is not None:
                out.append(["route", "replace", "unreachable", ip])  # cut off from us
        if main is not None:
            dev = self.devs[(name, direct[main])]
            done = {cmd[2] if cmd[2] != "unreachable" else cmd[3] for cmd in out}
            out += [["route", "replace", prefix, "via", self.ips[main], "dev", dev, "onlink"]
                    for prefix in self.cover if prefix not in done]
        return out


def cover(n_nodes: int) -> list[str]:
    """The CIDR prefixes covering exactly the addresses of nodes 0..n-1 (10.0.B.1-254 by
    `Topology.addresses`): at most 14 per 254 nodes."""
    out = []
    for block in range(0, n_nodes, 254):
        first, last = 1, min(254, n_nodes - block)
        while first <= last:
            size = first & -first
            while size > last - first + 1:
                size >>= 1
            out.append(f"10.0.{block // 254}.{first}/{33 - size.bit_length()}")
            first += size
    return out


def create_veths(cmds: list[list[str]]) -> None:
    """Every veth pair in one `ip -batch`, run on the host (the batch stops at the first
    failure; what it created lies in namespaces the teardown removes)."""
    if cmds:
        run(["ip", "-batch", "-"], input=batch(cmds), timeout=120)


def create_tunnels(cmds: list[list[str]]) -> None:
    """The tunnel devices of a host's carried links, in one `ip -batch` here."""
    if cmds:
        run(["ip", "-batch", "-"], input=batch(cmds), timeout=120)


def configure(nodes: dict[str, EmuNode], setups: dict[str, NodeSetup]) -> None:
    """Apply every node's set-up, nodes in parallel; every failure is reported."""
    parallel(lambda name: nodes[name].net_setup(setups[name]), list(setups))


def parallel(fn: Callable[[str], object], names: list[str]) -> None:
    """`fn(name)` for every name on a few threads (the work is mostly waiting for child
    processes); an EmulationError naming every name that failed."""
    errors = []
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        futures = {n: pool.submit(fn, n) for n in names}
    for n, f in futures.items():
        e = f.exception()
        if e is not None:
            errors.append(f"{n}: {str(e)[:400]}")
    if errors:
        raise EmulationError("; ".join(errors[:10]) + (f" (+{len(errors) - 10} more)"
                                                        if len(errors) > 10 else ""))
