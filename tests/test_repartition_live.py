"""Re-partitioning under edge_crash, end to end (root): no surviving node has the memory
for the lost middle stage as a process of its own, so the controller merges its part into
a neighbour's partition, which loads it in place."""

from __future__ import annotations

import pytest

from tests.helpers import root_only
from tests.helpers import run_pipeline as run

pytestmark = [pytest.mark.needs_root, root_only]


def test_repartition_when_no_node_can_take_the_stage_as_is() -> None:
    s, df, ev = run("technique=reconfiguration", "technique.mode=repartition",
                    "faults=edge_crash", "run.duration_s=6",
                    "topology.nodes={d1:{mem_mb:150},e2:{mem_mb:64},c1:{mem_mb:200}}")
    r = s["reconfiguration"]
    assert not any(c["fits"] for c in r["candidates"] if c["kind"] == "as_is"), r
    assert r["move"] in ("merge_down", "merge_up") and r["node"] in ("c1", "d1"), r
    assert r["cut"]["inputs"] and r["cut"]["outputs"] and r["decide_ms"] <= 50
    assert s["availability_after_recovery"] == 1.0 and s["mttr_ms"] is not None
    b = s["recovery_breakdown_ms"]
    assert b["load_ms"] > 0 and b["detection_ms"] > 0, b
    after = df[df["scheduled_s"] > s["fault_at_s"] + s["mttr_ms"] / 1000 + 0.1]
    assert len(after) >= 20 and set(after["path"].dropna()) == {"d1:head>c1:tail"}
    # answers from the merged partition are the model's: as accurate as before the fault
    assert after["correct"].mean() >= 0.9
