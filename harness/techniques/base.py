"""The interface every resilience technique implements.

A technique decides where each stage sends its results (routes) before the
run, and may act during it (health checks, failover, re-placement), recording
what it does as events. The baseline does nothing beyond the plain chain.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.pipeline import Deployment, PipelineConfig, routes
from harness.stage import Route
from harness.topology import Topology

Record = Callable[..., None]


class Technique:
    name = "technique"

    def check(self, pipe: PipelineConfig, topo: Topology) -> None:
        """Config errors (ConfigError) before anything touches the network."""

    def routes(self, pipe: PipelineConfig, ips: dict[str, str]) -> dict[str, Route | None]:
        return routes(pipe, ips)

    def start(self, emu, deployment: Deployment, record: Record) -> None:
        """Called once stages are ready, just before the first request."""

    def stop(self) -> None:
        """Called when the run ends, before stages stop."""

    def replicas(self) -> int:
        """Stage processes beyond one per stage (an overhead figure)."""
        return 0
