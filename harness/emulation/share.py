"""One host's share of a topology split over several hosts, and the tunnels that carry
the links leaving it.

A link whose ends are on two hosts is carried by its own VXLAN tunnel (one VNI per
link) between the hosts' addresses. On each host the link's local end runs as any
link's does, node <-veth-> wire namespace, and the delay line there bridges it to the
tunnel device instead of to the other end: it shapes the direction this host sends
(delay, jitter, loss; the node's htb its bandwidth) and passes the other through
unshaped (already shaped where it was sent), up or down with the link. So a carried
link is shaped once per direction, on the sending side, exactly as a local one.

MTU: VXLAN adds 50 bytes (outer Ethernet, IPv4, UDP, VXLAN headers), so a carried
link's devices get the hosts' network MTU - 50, both ends, and the node's TCP sees it:
nothing is fragmented or silently dropped for size.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from harness.emulation.tc import EmulationError
from harness.emulation.topology import Topology

VNI_SPACE = 2**24 - 1


@dataclass(frozen=True)
class Tunnel:
    vni: int
    local_ip: str
    remote_ip: str
    underlay_dev: str  # this host's device on the hosts' network
    port: int = 4789
    mtu: int = 1450
    # the hosts' network's one-way delay when it is not shaped itself (emulated hosts'
    # data leg): the sending host's line adds it to the direction it shapes
    extra_delay_ms: float = 0.0

    def device_cmd(self, name: str, netns: str) -> list[str]:
        """`ip link add` (without `ip`) of the tunnel device, run in the underlay's
        namespace and made right in `netns` (its socket stays with the underlay): moving
        a device afterwards waits for the kernel's grace periods, ~40 ms a tunnel here."""
        return ["link", "add", name, "netns", netns, "mtu", str(self.mtu), "type", "vxlan",
                "id", str(self.vni),
                "local", self.local_ip, "remote", self.remote_ip, "dstport", str(self.port),
                "dev", self.underlay_dev]


@dataclass(frozen=True)
class Share:
    """The nodes this host runs and the tunnels of the links that leave it."""

    host: str
    nodes: frozenset[str]
    tunnels: dict[str, Tunnel] = field(default_factory=dict)  # link name -> tunnel

    def has(self, node: str) -> bool:
        return node in self.nodes

    def sends(self, topo_link_a: str, topo_link_b: str) -> set[str]:
        """The directions of a link this host shapes: fwd (a -> b) where a is here."""
        return ({"fwd"} if topo_link_a in self.nodes else set()) | (
            {"rev"} if topo_link_b in self.nodes else set())


def vni_base(prefix: str, n_links: int) -> int:
    """The run's first VNI: from its prefix, so two runs between the same hosts differ."""
    span = VNI_SPACE - n_links - 1
    if span <= 0:
        raise EmulationError(f"{n_links} links: more than VXLAN's VNIs")
    return 1 + zlib.crc32(prefix.encode()) % span


def shares(topo: Topology, host_of: dict[str, str], address: dict[str, str],
           underlay: dict[str, str], prefix: str, port: int, mtu: int,
           extra_delay_ms: float = 0.0) -> dict[str, Share]:
    """Every host's share: its nodes, and a tunnel per link with one end there."""
    base = vni_base(prefix, len(topo.links))
    out: dict[str, dict[str, Tunnel]] = {h: {} for h in set(host_of.values())}
    for i, lk in enumerate(topo.links):
        ha, hb = host_of[lk.a], host_of[lk.b]
        if ha == hb:
            continue
        out[ha][lk.name] = Tunnel(base + i, address[ha], address[hb], underlay[ha], port, mtu,
                                  extra_delay_ms)
        out[hb][lk.name] = Tunnel(base + i, address[hb], address[ha], underlay[hb], port, mtu,
                                  extra_delay_ms)
    return {h: Share(h, frozenset(n for n, x in host_of.items() if x == h), t)
            for h, t in out.items()}
