"""Multi-modal sensing redundancy end to end (root): the accelerometer and the gyroscope
of `workload=har` on their own sensors and links, an encoder each, a fusion stage."""

from __future__ import annotations

import pytest

from tests.helpers import fault_events, root_only
from tests.helpers import run_pipeline as run

pytestmark = [pytest.mark.needs_root, root_only]
HAR = ["workload=har", "pipeline=har", "faults=sensor_crash", "run.duration_s=6"]
BOTH, ACC = "emb_acc+emb_gyro", "emb_acc"


def test_gyroscope_crash_costs_accuracy_not_availability() -> None:
    s, df, ev = run(*HAR, "technique=sensing_redundancy")
    assert list(fault_events(ev, "crash")["target"]) == ["s2"]
    t = s["fault_at_s"]
    before = df[df["scheduled_s"] < t - 0.1]
    after = df[df["scheduled_s"] > t + 0.2]
    # both modalities before the fault (a branch more than wait_ms late on a busy host
    # answers alone: allowed, rarely)
    assert (before["joined"] == BOTH).mean() >= 0.9, before["joined"].value_counts()
    assert len(after) >= 20 and set(after["joined"]) == {ACC}, after["joined"].value_counts()
    assert s["availability_after_fault"] == 1.0
    ref = s["reference_join"]
    # every answer is what the fusion model says, in process, for the modalities that came
    assert ref["agreement"] == 1.0
    # the honest task: each modality alone is worth less than both (axis dropout)
    assert ref["by_joined"][BOTH] > max(ref["by_joined"][ACC], ref["by_joined"]["emb_gyro"])
    assert sum(v["n"] for v in s["accuracy_by_joined"].values()) == s["n_answered"]
    # answering without the gyroscope waits for it technique.wait_ms (20), no longer
    assert after["latency_ms"].median() < 20 + 15, after["latency_ms"].describe()


def test_the_baseline_loses_every_window_the_gyroscope_misses() -> None:
    s, df, ev = run(*HAR, "technique=baseline")
    t = s["fault_at_s"]
    assert set(df[df["scheduled_s"] < t - 0.1]["status"]) == {"ok"}
    after = df[df["scheduled_s"] > t + 0.2]
    assert s["availability_after_fault"] == 0.0 and set(after["status"]) == {"failed"}
    assert after["error"].str.contains("join: no emb_gyro within 100 ms").all()
