"""Each resilience technique under a fault, end to end on the emulated network (root)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.helpers import REPO, accounting, harness_cmd, root_only
from tests.helpers import run_pipeline as run

CARD = json.loads((REPO / "models" / "digits" / "card.json").read_text())
pytestmark = [pytest.mark.needs_root, root_only]


def test_failover_warm_recovers_fast() -> None:
    s, df, ev = run("technique=failover", "faults=edge_crash", "run.duration_s=9")
    assert s["verdict"] == "VALID", s["verdict_reasons"]
    accounting(s, df)
    assert s["availability_after_fault"] >= 0.95
    assert s["mttd_ms"] is not None and s["mttr_ms"] <= 150, (s["mttd_ms"], s["mttr_ms"])
    assert s["replicas"] == 1 and s["cpu_s"] > 0 and s["bytes_sent"] > 0
    after = df[df["scheduled_s"] > s["fault_at_s"] + 0.2]
    assert set(after["path"].dropna()) == {"d1:head>e2:middle>c1:tail"}
    assert "detect" in set(ev["kind"])


def test_failover_active_active() -> None:
    s, df, _ = run("technique=failover", "technique.mode=active_active", "faults=edge_crash",
                   "run.duration_s=6")
    accounting(s, df)
    assert s["availability_after_fault"] >= 0.95
    assert s["mttr_ms"] <= 50, s["mttr_ms"]


def test_failover_cold_reports_its_breakdown() -> None:
    s, df, ev = run("technique=failover", "technique.mode=cold", "faults=edge_crash",
                    "run.duration_s=9")
    accounting(s, df)
    b = s["recovery_breakdown_ms"]
    for k in ("detection_ms", "process_start_ms", "model_load_ms", "first_inference_ms",
              "reroute_ms"):
        assert b[k] is not None and b[k] >= 0, b
    assert sum(b.values()) == pytest.approx(s["mttr_ms"], rel=0.10)
    assert "recover.start_replica" in set(ev["kind"])
    assert s["availability_after_fault"] >= 0.8


def test_failover_small_variant_serves_after_crash() -> None:
    s, df, _ = run("technique=failover", "technique.variant.middle=models/digits/middle_small.onnx",
                   "faults=edge_crash", "run.duration_s=6")
    accounting(s, df)
    assert s["availability_after_fault"] >= 0.95
    assert s["accuracy_after_fault"] >= CARD["test_accuracy"]["small_middle"] - 0.05


def test_structural_skip_path_then_full_path_again() -> None:
    s, df, _ = run("technique=structural", "faults=edge_crash_recover", "run.duration_s=12")
    assert s["verdict"] == "VALID", s["verdict_reasons"]
    accounting(s, df)
    t_crash, t_back = 4.0, 8.0
    during = df[(df["scheduled_s"] > t_crash + 0.2) & (df["scheduled_s"] < t_back)]
    assert (during["status"] == "ok").mean() >= 0.95
    assert during["degraded"].fillna(False).all()
    assert set(during["path"].dropna()) == {"d1:head>c1:tail"}
    assert abs(during["correct"].mean() - CARD["test_accuracy"]["skip_only"]) <= 0.06
    later = df[df["scheduled_s"] > t_back + 1.5]
    assert len(later) and (later["path"] == "d1:head>e1:middle>c1:tail").all()
    assert not later["degraded"].fillna(True).any()


def test_same_fault_and_requests_for_two_techniques() -> None:
    a, da, ea = run("technique=baseline", "faults=edge_crash", "run.duration_s=6", "seed=3")
    b, db, eb = run("technique=failover", "faults=edge_crash", "run.duration_s=6", "seed=3")
    cols = ["request_id", "sensor", "sample_id", "scheduled_s"]
    pd.testing.assert_frame_equal(da[cols], db[cols])
    ta = float(ea[ea["kind"] == "fault.crash"]["t_s"].iloc[0])
    tb = float(eb[eb["kind"] == "fault.crash"]["t_s"].iloc[0])
    assert abs(ta - tb) <= 0.010


def test_bad_technique_cli_exit_2() -> None:
    p = harness_cmd("topology=device_edge_cloud", "workload=digits", "technique=failover",
                    "technique.replicas={middle: e1}")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "config error: technique.replicas.middle='e1': the replica is on the node it protects"]


def test_reconfiguration_replaces_the_stage() -> None:
    s, df, ev = run("technique=reconfiguration", "faults=edge_crash", "run.duration_s=9")
    assert s["verdict"] == "VALID", s["verdict_reasons"]
    accounting(s, df)
    assert s["mttr_ms"] is not None and s["mttr_ms"] <= 3000
    assert s["availability_after_recovery"] >= 0.95
    b = s["recovery_breakdown_ms"]
    for k in ("detection_ms", "process_start_ms", "model_load_ms", "first_inference_ms",
              "route_push_ms"):
        assert b[k] >= 0, b
    assert sum(b.values()) == pytest.approx(s["mttr_ms"], rel=0.10)
    assert {"detect", "reconfigure"} <= set(ev["kind"])
    later = df[df["scheduled_s"] > s["fault_at_s"] + s["mttr_ms"] / 1000 + 0.1]
    assert set(later["path"].dropna()) == {"d1:head>c1:middle>c1:tail"}


def test_sensing_redundancy_survives_a_camera_crash() -> None:
    s, df, ev = run("technique=sensing_redundancy", "faults=sensor_crash", "run.duration_s=9")
    assert s["verdict"] == "VALID", s["verdict_reasons"]
    accounting(s, df)
    assert set(df["sensor"]) == {"s1+s2"}  # one request per observation
    assert s["availability"] >= 0.99
    assert s["accuracy_after_fault"] >= CARD["test_accuracy"]["single_camera"] - 0.01 - 0.05
    assert list(ev[ev["kind"] == "fault.crash"]["target"]) == ["s2"]
    assert (df["path"].dropna().str.endswith(">c1:fusion")).all()


def test_sensor_noise_degrades_accuracy_not_availability() -> None:
    s, df, ev = run("technique=baseline", "faults=sensor_noise", "run.duration_s=9")
    assert s["verdict"] == "VALID", s["verdict_reasons"]
    accounting(s, df)
    assert s["availability"] >= 0.99
    after = df[df["scheduled_s"] >= s["fault_at_s"]]
    noisy = after[after["sensor"] == "s2"]["correct"].mean()
    clean = after[after["sensor"] == "s1"]["correct"].mean()
    assert clean - noisy >= 0.2, (clean, noisy)
    assert "fault.sensor_noise" in set(ev["kind"])


def test_structural_early_exit_on_the_device() -> None:
    s, df, _ = run("technique=structural", "technique.early_exit=models/digits/exit1.onnx",
                   "faults=edge_crash", "run.duration_s=6")
    assert s["verdict"] == "VALID", s["verdict_reasons"]
    accounting(s, df)
    assert s["availability_after_fault"] >= 0.95
    after = df[df["scheduled_s"] > s["fault_at_s"] + 0.2]
    assert set(after["path"].dropna()) == {"d1:head>d1:early_exit"}
    assert abs(after["correct"].mean() - CARD["test_accuracy"]["early_exit"]) <= 0.08
