"""The `hosts` config group: which machines an experiment spans and who goes where."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from harness.core.config import check_range, fail

KINDS = ("local", "emulated", "ray")
HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
VXLAN_OVERHEAD = 50  # bytes: outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8


@dataclass
class HostsConfig:
    kind: str = "local"  # local | emulated | ray
    n: int = 3  # emulated: hosts h1..hN
    lan_delay_ms: float = 0.5  # emulated: one way, host to host
    lan_mtu: int = 1500  # the hosts' network; a cross-host link carries lan_mtu - 50
    address: str = "auto"  # ray: `ray.init` address
    place: dict[str, str] | None = None  # node -> host; the rest by the placer
    vxlan_port: int = 4789  # UDP port of the cross-host tunnels (open it between hosts)
    clock_bound_ms: float | None = None  # max clock uncertainty; None: a tenth of the MTTD
    lease_s: float = 10.0  # an agent whose coordinator is silent this long removes the run
    # emulated: hosts whose clocks are this far ahead (ms), as unsynchronised machines'
    # are: measured like any offset, and the run's events must still line up
    skew_ms: dict[str, float] | None = None

    def validate(self, key: str) -> None:
        if self.kind not in KINDS:
            fail(f"{key}.kind", self.kind, f"one of {', '.join(KINDS)}")
        check_range(f"{key}.n", self.n, 1, 64)
        check_range(f"{key}.lan_delay_ms", self.lan_delay_ms, 0, 10_000)
        check_range(f"{key}.lan_mtu", self.lan_mtu, 576 + VXLAN_OVERHEAD, 65_535)
        check_range(f"{key}.vxlan_port", self.vxlan_port, 1, 65_535)
        check_range(f"{key}.lease_s", self.lease_s, 2, 3600)
        if self.clock_bound_ms is not None:
            check_range(f"{key}.clock_bound_ms", self.clock_bound_ms, 0)
            if self.clock_bound_ms <= 0:
                fail(f"{key}.clock_bound_ms", self.clock_bound_ms, "must be > 0")
        if self.place is None:
            self.place = {}
        if not isinstance(self.place, dict):
            fail(f"{key}.place", self.place, "must map node names to host names")
        for node, host in self.place.items():
            if not isinstance(host, str) or not HOST_NAME.fullmatch(host):
                fail(f"{key}.place.{node}", host, "must be a host name")
        for host, ms in (self.skew_ms or {}).items():
            if self.kind != "emulated":
                fail(f"{key}.skew_ms.{host}", ms, "only emulated hosts have a clock to skew "
                     "(hosts=emulated)")
            if host not in self.emulated_names():
                fail(f"{key}.skew_ms.{host}", ms, f"unknown host (hosts: "
                     f"{', '.join(self.emulated_names())})")
            check_range(f"{key}.skew_ms.{host}", ms, -86_400_000, 86_400_000)
        if self.kind == "local" and self.place:
            node = next(iter(self.place))
            fail(f"{key}.place.{node}", self.place[node],
                 "hosts=local runs every node here (hosts=emulated or hosts=ray place them)")

    def check(self, topology: Any, raw: dict[str, Any]) -> None:
        """Against the rest of the experiment, before anything runs: where the hosts are
        known (emulated), the placement; what a run across hosts cannot do yet."""
        if self.kind == "local":
            real = next((lk for lk in topology.links if lk.real), None)
            if real is not None:
                fail(f"topology.links.{real.name}.real", True, "a real link is the network "
                     "between two hosts (hosts=emulated or hosts=ray)")
            return
        if self.kind == "emulated":
            from harness.hosts.emulated import emulated_hosts

            self.check_placement(topology, emulated_hosts(self))
        shaper = (raw.get("shaper") or {}).get("_target_", "")
        if shaper.endswith("NetemShaper"):
            fail("shaper._target_", shaper, "links between hosts are shaped by the userspace "
                 "delay line (netem across hosts is not built yet)")
        if raw.get("mode") == "cli":
            fail("mode", "cli", "the interactive CLI runs on one host (hosts=local)")
        if self.kind == "ray":  # last: it connects to the cluster (no host is touched)
            from harness.hosts.cluster import probe

            self.check_placement(topology, probe(self.address))

    def check_placement(self, topology: Any, hosts: Any) -> None:
        """The nodes placed on `hosts` (the placer's ConfigErrors), every real link
        between two of them."""
        from harness.hosts.placer import place

        host_of = place(topology, hosts, self.place or {}).host_of
        for lk in topology.links:
            if lk.real and host_of[lk.a] == host_of[lk.b]:
                fail(f"topology.links.{lk.name}.real", True, f"both ends are on host "
                     f"{host_of[lk.a]}: a real link is the network between two hosts (place "
                     f"them apart with hosts.place)")

    def emulated_names(self) -> list[str]:
        return [f"h{i + 1}" for i in range(self.n)]

    @property
    def tunnel_mtu(self) -> int:
        """The MTU of an emulated link carried between hosts (no fragmentation)."""
        return self.lan_mtu - VXLAN_OVERHEAD

