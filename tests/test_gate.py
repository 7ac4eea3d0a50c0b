"""The regression gate's decisions on per-seed tables whose answer is known."""

from __future__ import annotations

import pandas as pd

from harness.report.gate import Rule, compare
from tests.helpers import entry

RULES = {"mttr_ms": Rule("lower", 0.5, 30), "availability_after_fault": Rule("higher", 0, 0.03)}


def table(mttr: list[float], avail: list[float], technique: str = "failover warm",
          verdict: str = "VALID") -> pd.DataFrame:
    return pd.DataFrame({"backend": "mininet", "technique": technique, "faults": "edge_crash",
                         "seed": range(1, len(mttr) + 1), "verdict": verdict,
                         "mttr_ms": mttr, "availability_after_fault": avail})


BASE = table([80, 85, 90, 82, 88], [1.0, 1.0, 0.99, 1.0, 1.0])


def decide(cur: pd.DataFrame) -> dict[str, bool]:
    out = compare(BASE, cur, 0.01, RULES)
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


def test_invalid_runs_are_left_out_and_unmatched_rows_skipped() -> None:
    bad = table([900] * 5, [0.0] * 5, verdict="INVALID")
    assert compare(BASE, bad, 0.01, RULES).empty
    other = table([900] * 5, [0.0] * 5, technique="structural")
    assert compare(BASE, other, 0.01, RULES).empty


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
