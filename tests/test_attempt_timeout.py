"""A forwarding attempt's default timeout leaves a retry room within the SLO."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.pipeline.deployment import Deployment
from harness.run.experiment import compose_experiment

BASE = ["topology=device_edge_cloud", "workload=digits"]


def head_route(tmp_path: Path, *overrides: str):
    exp = compose_experiment(*BASE, *overrides)
    files = Deployment(None, exp.pipeline, tmp_path, lambda *a, **k: None).prepare()
    ips = {n.name: f"10.0.0.{i + 1}" for i, n in enumerate(exp.topology.nodes)}
    inst = exp.technique.instances(exp.plan, files, ips)
    head = next(i for i in inst if i.key == "head@d1")
    assert head.route is not None
    return head.route


@pytest.mark.parametrize("technique", ["failover", "structural", "adaptive"])
def test_default_is_half_the_slo_and_a_setting_wins(tmp_path: Path, technique: str) -> None:
    # A timeout equal to the SLO made every request a crash caught late by a few ms
    # (warm failover's MTTR read 0 or ~100 ms by the fault's phase)
    t = f"technique={technique}"
    assert head_route(tmp_path, t).attempt_timeout_ms == 50
    assert head_route(tmp_path, t, "workload.slo_ms=80").attempt_timeout_ms == 40
    assert head_route(tmp_path, t, "technique.attempt_timeout_ms=70").attempt_timeout_ms == 70


def test_adaptive_halves_the_requests_deadline_not_its_objective(tmp_path: Path) -> None:
    # its objective only chooses among paths; 12.5 ms attempts (an objective of 25 ms)
    # timed out calls a busy machine had merely delayed
    route = head_route(tmp_path, "technique=adaptive", "technique.slo_ms=25")
    assert route.attempt_timeout_ms == 50
