"""The bench's hosts section on a fake harness (what it runs and how it sums up)."""

from __future__ import annotations

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
