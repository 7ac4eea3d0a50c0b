"""The interface every resilience technique implements.

A technique decides which stage processes run where and where each sends its
results (instances with routes) before the run, and may act during it
(starting a cold replica, re-placing stages), recording what it does as
events. The baseline is one instance per stage in a plain chain.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.core.config import LinkProps, fail
from harness.emulation.topology import Topology
from harness.pipeline.deployment import Deployment
from harness.pipeline.instances import Instance, primaries
from harness.pipeline.plan import PipelinePlan
from harness.pipeline.routing import DETECTORS, Health

Record = Callable[..., None]


def positive(**values: float) -> None:
    """Technique settings that must be > 0."""
    for key, v in values.items():
        if v <= 0:
            fail(f"technique.{key}", v, "must be > 0")


def health_watch(detector: str, health_period_ms: float, health_timeout_ms: float,
                 idle_probe_ms: float, suspect_min_ms: float) -> Health:
    """How an upstream stage watches its targets (routing.Health), from technique keys."""
    if detector not in DETECTORS:
        fail("technique.detector", detector, f"one of {', '.join(DETECTORS)}")
    positive(health_period_ms=health_period_ms, health_timeout_ms=health_timeout_ms,
             idle_probe_ms=idle_probe_ms, suspect_min_ms=suspect_min_ms)
    return Health(health_period_ms, health_timeout_ms, detector=detector,
                  idle_ms=idle_probe_ms, suspect_min_ms=suspect_min_ms)


def check_moves(key: str, moves: dict[str, str], plan: PipelinePlan, topo: Topology,
                same_node: str) -> None:
    """A {stage: node} map: known stages with an upstream stage, known other nodes."""
    stages = {s.name: s for s in plan.stages}
    nodes = {n.name for n in topo.nodes}
    for stage, node in moves.items():
        if stage not in stages:
            fail(f"{key}.{stage}", node, "unknown stage")
        if stage == plan.stages[0].name:
            fail(f"{key}.{stage}", node, "the first stage has no upstream stage to re-route")
        if node not in nodes:
            fail(f"{key}.{stage}", node, "unknown node")
        if node == stages[stage].node:
            fail(f"{key}.{stage}", node, same_node)


class Technique:
    name = "technique"
    observations = False  # True: every sensor sends every request (redundant sensing)
    fleet = False  # True: runs pipelines with stages placed by role (many instances each)
    branches = False  # True: runs pipelines whose branches meet at a join stage
    # what the run's other groups say that a technique may plan with (bind)
    link_defaults = LinkProps()
    workload_slo_ms = 100.0
    # where a technique writes partitions it cuts itself (the run's partitions/), set
    # before instances()
    parts_dir: Path | None = None

    def bind(self, link_defaults: LinkProps, slo_ms: float) -> None:
        """The network's default link properties and the workload's SLO (before check)."""
        self.link_defaults, self.workload_slo_ms = link_defaults, slo_ms

    def attempt_ms(self, configured: float | None, slo_ms: float | None = None) -> float:
        """One forwarding attempt's timeout: as configured, else half the SLO, so that a
        retry on the next target can still answer in time. (A timeout equal to the SLO
        makes every request a fault catches late by a few ms, and MTTR then hinges on
        them: warm failover read 0 or ~100 ms by the fault's phase.)"""
        if configured is not None:
            return configured
        return (slo_ms if slo_ms is not None else self.workload_slo_ms) / 2

    def check(self, plan: PipelinePlan, topo: Topology) -> None:
        """Config errors (ConfigError) before anything touches the network."""

    def instances(self, plan: PipelinePlan, files: dict[str, Path],
                  ips: dict[str, str]) -> list[Instance]:
        return primaries(plan, files, plan.routes(ips))

    def start(self, emu, deployment: Deployment, record: Record) -> None:
        """Called once stages are ready, just before the first request."""

    def stop(self) -> None:
        """Called when the run ends, before stages stop."""

    def summary_from(self, events: list[dict]) -> dict:
        """Summary fields of the technique's own, from its events (monotonic `t`)."""
        return {}

    def recovery_breakdown_from(self, events: list[dict]) -> dict | None:
        """Recovery phases (`t_detect`, monotonic, and `*_ms`), from the technique's own
        events (monotonic `t`) and what it recorded itself; None if it has none."""
        return None
