"""The regression gate's decisions on per-seed tables whose answer is known."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from harness.report.gate import Rule, compare, load_rules, pooled
from tests.helpers import entry

RULES = {"mttr_ms": Rule("lower", 0.5, 30), "availability_after_fault": Rule("higher", 0, 0.03)}
PAIRED = {"p50_ms": Rule("lower", 0.10, 0.3), "mttd_ms": Rule("lower", 0.25, 20)}


def table(mttr: list[float], avail: list[float], technique: str = "failover warm",
          verdict: str = "VALID", **more: list) -> pd.DataFrame:
    return pd.DataFrame({"backend": "mininet", "technique": technique, "faults": "edge_crash",
                         "seed": range(1, len(mttr) + 1), "verdict": verdict,
                         "mttr_ms": mttr, "availability_after_fault": avail, **more})


BASE = table([80, 85, 90, 82, 88], [1.0, 1.0, 0.99, 1.0, 1.0])


def decide(cur: pd.DataFrame, base: pd.DataFrame = BASE, rules=RULES,
           paired: bool = False) -> dict[str, bool]:
    out = compare(base, cur, 0.05 if paired else 0.01, rules, paired)
    return dict(zip(out["metric"], out["regressed"], strict=True))


def test_unchanged_and_small_drift_pass() -> None:
    assert decide(BASE) == {"mttr_ms": False, "availability_after_fault": False}
    # every seed 20 ms slower: significant, but inside max(50 %, 30 ms)
    assert not decide(table([100, 105, 110, 102, 108], [1.0] * 5))["mttr_ms"]


def test_a_slower_detection_is_caught_and_noise_is_not() -> None:
    # every seed ~3x slower (e.g. a 250 ms health period): beyond tolerance and significant
    assert decide(table([300, 280, 310, 290, 305], [1.0] * 5))["mttr_ms"]
    # one wild seed moves the median little: within tolerance
    assert not decide(table([80, 85, 90, 82, 900], [1.0] * 5))["mttr_ms"]
    # availability: lost requests after the fault on every seed
    assert decide(table([80, 85, 90, 82, 88], [0.9, 0.92, 0.91, 0.9, 0.93])
                  )["availability_after_fault"]


def test_data_that_disappears_fails_the_gate() -> None:
    # every current run INVALID: the key fails, named, with the runs' reason
    bad = table([900] * 5, [0.0] * 5, verdict="INVALID", reason=["sensor s1 exited 1"] * 5)
    out = compare(BASE, bad, 0.01, RULES)
    assert list(out["metric"]) == ["valid_runs"] and out["regressed"].all()
    assert "0 of 5 current runs VALID" in out["why"][0] and "sensor s1 exited 1" in out["why"][0]
    # the key is not in the current bench at all
    other = table([80] * 5, [1.0] * 5, technique="structural")
    assert decide(other) == {"valid_runs": True}
    # more than half the runs lost: fails, and the remaining ones are still judged
    some = BASE.assign(verdict=["VALID", "VALID", "INVALID", "INVALID", "INVALID"])
    assert decide(some) == {"valid_runs": True, "mttr_ms": False,
                            "availability_after_fault": False}
    # detection stopped firing: a metric null on every seed (or all but one)
    gone = table([80, None, None, None, None], [1.0] * 5)
    out = compare(BASE, gone, 0.01, RULES)
    row = out[out["metric"] == "mttr_ms"].iloc[0]
    assert row["regressed"] and row["why"] == "measured on 5 baseline runs, on 1 of 5 current runs"
    # a metric the baseline never had (the baseline under no fault has no MTTR) is no row
    assert "mttr_ms" not in decide(table([None] * 5, [1.0] * 5), table([None] * 5, [1.0] * 5))


def _p50(values: list[float]) -> pd.DataFrame:
    return table([80.0] * len(values), [1.0] * len(values), p50_ms=values,
                 mttd_ms=[40.0] * len(values))


# one session's unchanged runs, seed by seed (the machine's drift moves both sides)
A = [5.0, 5.6, 4.8, 6.9, 5.2, 7.4]
A2 = [5.2, 5.4, 4.9, 6.6, 5.5, 7.1]


def test_paired_gate_catches_20_percent_and_not_noise() -> None:
    assert not decide(_p50(A2), _p50(A), PAIRED, paired=True)["p50_ms"]
    # 20 % slower on every seed: +1.0..1.5 ms against a tolerance of 10 % (0.56 ms)
    slow = [round(v * 1.2, 3) for v in A2]
    assert decide(_p50(slow), _p50(A), PAIRED, paired=True)["p50_ms"]
    # the same 20 % unpaired would have to beat seed-to-seed spread: the pairs remove it
    out = compare(_p50(A), _p50(slow), 0.05, PAIRED, paired=True)
    assert out.set_index("metric").loc["p50_ms", "n"] == "6 pairs"
    # faster is never a regression
    assert not decide(_p50([v * 0.5 for v in A]), _p50(A), PAIRED, paired=True)["p50_ms"]


def test_paired_seed_without_a_value_counts_as_worse() -> None:
    base = _p50(A)
    # detection lost on 4 of 6 seeds: median difference is +inf, significant on 6 pairs
    cur = _p50(A).assign(mttd_ms=[40.0, 41.0, None, None, None, None])
    out = compare(base, cur, 0.05, PAIRED, paired=True).set_index("metric")
    assert out.loc["mttd_ms", "regressed"] and math.isinf(out.loc["mttd_ms", "worse_by"])
    # lost on one seed only: the median is that of the others, no regression
    cur = _p50(A).assign(mttd_ms=[40.0, 41.0, 39.0, 40.0, 42.0, None])
    assert not compare(base, cur, 0.05, PAIRED, paired=True).set_index(
        "metric").loc["mttd_ms", "regressed"]


def _rows(factor: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """4 rows x 6 seeds of p50, the baseline with the spread unchanged code showed in one
    session beside a busy loop (pairs 0.84-1.10x), the current `factor` x slower."""
    noise = [1.04, 1.0, 1.05, 0.84, 1.05, 1.10, 0.95, 0.92, 0.98, 1.13, 1.01, 0.96,
             1.02, 0.9, 1.08, 0.99, 1.0, 0.97, 0.93, 1.06, 1.0, 1.03, 0.98, 1.01]
    base = pd.concat([_p50(A).assign(technique=t) for t in "abcd"], ignore_index=True)
    cur = base.assign(p50_ms=base["p50_ms"] * [n * factor for n in noise])
    return base, cur


def test_pooled_p50_catches_20_percent_over_every_row_and_not_noise() -> None:
    rules = load_rules(mode="pooled")[1]
    same = pooled(*_rows(1.0), 0.05, rules).set_index("metric")
    assert same.loc["p50_ms ratio", "n"] == "24 pairs"
    assert not same.loc["p50_ms ratio", "regressed"]
    slow = pooled(*_rows(1.2), 0.05, rules).set_index("metric")
    assert slow.loc["p50_ms ratio", "regressed"]
    assert slow.loc["p50_ms ratio", "current"] == pytest.approx(1.2, abs=0.03)
    # 5 % slower: inside the 10 % tolerance, however significant
    assert not pooled(*_rows(1.05), 0.05, rules).set_index("metric").loc[
        "p50_ms ratio", "regressed"]


def test_rules_of_each_mode_are_shipped() -> None:
    alpha, paired = load_rules(mode="paired")
    _, committed = load_rules(mode="committed")
    assert alpha == 0.05 and set(paired) == set(committed)
    # the pooled p50 tolerance must leave room to catch a 20 % regression
    assert load_rules(mode="pooled")[1]["p50_ms"].rel <= 0.15


def test_gate_command_exit_codes(tmp_path) -> None:
    a, b, c = (tmp_path / n for n in "abc")
    for d, t in ((a, BASE), (b, BASE), (c, table([300, 280, 310, 290, 305], [1.0] * 5))):
        d.mkdir()
        t.to_csv(d / "runs.csv", index=False)
    ok = entry("harness.gate", str(a), str(b))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    slow = entry("harness.gate", str(a), str(c))
    assert slow.returncode == 1
    assert "regression: failover warm under edge_crash (mininet): mttr_ms" in slow.stdout
    missing = entry("harness.gate", str(a), str(tmp_path / "nope"))
    assert missing.returncode == 2 and missing.stderr.startswith("gate error: DIR=")
    gone = tmp_path / "gone"
    gone.mkdir()
    table([80, None, None, None, None], [1.0] * 5).to_csv(gone / "runs.csv", index=False)
    r = entry("harness.gate", str(a), str(gone))
    assert r.returncode == 1 and "mttr_ms measured on 5 baseline runs, on 1 of 5" in r.stdout


def test_gate_alone_uses_the_session_base_or_says_it_falls_back(tmp_path) -> None:
    cur = tmp_path / "cur"
    (cur / "base").mkdir(parents=True)
    _p50(A).to_csv(cur / "base" / "runs.csv", index=False)
    _p50([round(v * 1.2, 3) for v in A]).to_csv(cur / "runs.csv", index=False)
    r = entry("harness.gate", str(cur))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "paired by seed" in r.stdout and "p50_ms" in r.stdout
    # no base/: the committed figures, and the reason the base commit did not run
    lone = tmp_path / "lone"
    lone.mkdir()
    _p50(A).to_csv(lone / "runs.csv", index=False)
    (lone / "bench.json").write_text(json.dumps({"base": {"why_not": "shallow clone"}}))
    r = entry("harness.gate", str(lone))
    assert "committed figures" in r.stdout and "shallow clone" in r.stdout
