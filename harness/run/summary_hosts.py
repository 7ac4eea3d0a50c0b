"""summary.json's parts of a run across hosts (harness/hosts: placer.Placement.describe,
clock.Offset), typed like the rest (`harness.run.summary_parts`)."""

from __future__ import annotations

from typing import Literal

from harness.run.summary_parts import Part, d


class HostEntry(Part):
    address: str = d("the host's address on the hosts' network")
    cpus: float = d("CPUs it offers (0: not limited)")
    mem_mb: int = d("memory it offers, MiB (0: not limited)")
    gpus: int = d("GPUs it offers")
    nodes: list[str] = d("the topology nodes it runs")


class NodePlace(Part):
    host: str = d("the host that runs the node")
    why: str = d("pinned by hosts.place, or the placer's reasons")


class Hosts(Part):
    """Which host ran what (harness/hosts/placer)."""

    kind: Literal["emulated", "ray"] = d("emulated hosts on one machine, or a Ray cluster's")
    hosts: dict[str, HostEntry] = d("each host")
    nodes: dict[str, NodePlace] = d("each node's host and why")
    cross_links: list[str] = d("links whose ends are on two hosts (each a VXLAN tunnel)")
    tunnel_mtu: int = d("the MTU of those links: the hosts' network's less 50")


class ClockOffset(Part):
    """One measurement of a host's clock against the coordinator's (harness/hosts/clock)."""

    offset_ms: float = d("host clock minus coordinator clock")
    uncertainty_ms: float = d("the true offset is within +- this")
    rtt_ms: float = d("round trip of the exchange the estimate comes from")
    exchanges: int = d("exchanges made; the shortest round trip's is the estimate")


class HostClock(Part):
    """A host's clock over the run (harness/hosts/split.clock_report)."""

    before: ClockOffset = d("measured when the hosts came up")
    after: ClockOffset | None = d("measured after the run (null: it could not be)")
    moved_ms: float | None = d("how far the offset moved between the two")
    uncertainty_ms: float | None = d("over the whole run: the wider bound plus the move")
    bound_ms: float | None = d("the most it may be (hosts.clock_bound_ms, else MTTD / 10); "
                               "above it the run is INVALID")
