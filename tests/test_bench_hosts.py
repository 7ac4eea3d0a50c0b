"""The bench's hosts section on a fake harness (what it runs and how it sums up)."""

from __future__ import annotations

import pytest

from harness.bench import hosts


def test_each_scenario_runs_one_host_and_split_per_seed_and_takes_medians() -> None:
    calls: list[list[str]] = []

    def fake(overrides: list[str]) -> dict:
        calls.append(overrides)
        split = any(o.startswith("hosts=") for o in overrides)
        seed = int(next(o for o in overrides if o.startswith("seed="))[5:])
        if split and seed == 2 and "technique=baseline" in overrides:
            return {"verdict": "FAILED", "latency_ms": {"p50": None, "p99": None}}
        return {"verdict": "VALID", "latency_ms": {"p50": (7.0 if split else 5.0) + seed,
                                                   "p99": 20.0},
                "mttr_ms": 0.0, "mttd_ms": 60.0 + seed, "availability_after_fault": 1.0}

    rows = hosts.pipeline_rows(6.0, 2, fake)
    # 2 scenarios x 2 seeds x (one host, split), seeds outermost: one host then split
    assert len(calls) == 8
    assert [("hosts=emulated" in c, c[3]) for c in calls[:4]] == [
        (False, "seed=1"), (True, "seed=1"), (False, "seed=2"), (True, "seed=2")]
    assert "hosts.n=3" in calls[5] and "hosts.place={s1: h1, s2: h1, d1: h1, e1: h2, e2: h3, " \
        "c1: h3}" in calls[5]
    base_one, base_split, fo_one, fo_split = rows
    assert (base_one["hosts"], base_one["valid"], base_one["p50_ms"]) == (1, "2/2", 6.5)
    # the failed split run is counted, never averaged: its one valid seed is the median
    assert (base_split["hosts"], base_split["valid"], base_split["p50_ms"]) == (2, "1/2", 8.0)
    assert (fo_split["hosts"], fo_split["mttd_ms"]) == (3, 61.5)
    assert fo_one["availability_after_fault"] == 1.0
    # against the LAN: one crossing each way at 0.5 ms adds 1 ms; the third host, 2
    assert (base_one["p50_added_ms"], base_one["lan_rtt_added_ms"]) == (None, 0.0)
    assert (base_split["p50_added_ms"], base_split["lan_rtt_added_ms"]) == (1.5, 1.0)
    assert (fo_split["p50_added_ms"], fo_split["lan_rtt_added_ms"]) == (2.0, 2.0)


def test_a_fidelity_row_reads_the_carried_link_and_names_a_run_without_one(tmp_path) -> None:
    import json

    (tmp_path / "fidelity.json").write_text(json.dumps({"links": {"d1-e1": {
        "delay_ms": {"configured": 5.5, "measured": 5.62, "ok": True},
        "bw_mbit": {"measured_tcp": 47.1, "expected_tcp": 47.74, "mss": 1398, "ok": True}}}}))
    row = hosts.fidelity_row(2, str(tmp_path), [])
    assert row["delay_error_ms"] == pytest.approx(0.12)
    assert (row["tcp_mbit"], row["mss"], row["ok"]) == (47.1, 1398, True)
    missing = hosts.fidelity_row(2, None, ["exit 1: host h2 unreachable"])
    assert (missing["ok"], missing["failed"]) == (False, "exit 1: host h2 unreachable")
    md = hosts.hosts_md([], [row, missing], [])
    assert "| 2 | d1-e1 | 5.5 | 5.62 | 0.12 | 47.1 | 47.74 | 1398 | True |" in md
