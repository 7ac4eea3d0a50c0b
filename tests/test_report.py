"""`python -m harness.report`: figures are made, tables are right on runs whose answer is
known, INVALID runs are shown and left out."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from harness.report.render import build
from tests.helpers import entry


def fake_run(root, name: str, technique: str, seed: int, mttr: float | None,
             avail_after: float, verdict: str = "VALID", cpu: float = 10.0):
    """A run directory with a summary and 80 requests around a fault at 2 s."""
    d = root / name
    d.mkdir()
    rng = np.random.default_rng(seed)
    t = np.arange(80) * 0.05
    ok = (t < 2) | (rng.random(80) < avail_after)
    req = pd.DataFrame({"request_id": range(80), "sensor": "s1", "sample_id": range(80),
                        "scheduled_s": t, "sent_s": t, "completed_s": np.where(ok, t + 0.005,
                                                                                np.nan),
                        "latency_ms": np.where(ok, 5.0 + rng.random(80), np.nan),
                        "status": np.where(ok, "ok", "lost"), "correct": ok,
                        "path": "d1:head", "degraded": False, "error": None})
    req.to_parquet(d / "requests.parquet")
    (d / "summary.json").write_text(json.dumps({
        "verdict": verdict, "verdict_reasons": [] if verdict == "VALID" else ["stage died"],
        "technique": technique, "faults": "edge_crash", "seed": seed,
        "backend": "harness.emulation.backends.mininet.MininetBackend",
        "availability": float(ok.mean()), "availability_after_fault": avail_after,
        "accuracy": 1.0, "accuracy_after_fault": 1.0, "mttd_ms": 50.0 if mttr else None,
        "mttr_ms": mttr, "cpu_s": cpu, "bytes_sent": 1000, "replicas": 1,
        "fault_at_s": 2.0, "slo_ms": 100, "latency_ms": {"p50": 5.5, "p99": 6.0},
        "provenance": {"git_commit": "abc", "cores": 2}}))
    return d


def test_report_of_runs_with_a_known_answer(tmp_path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    dirs = []
    for seed in range(1, 7):
        dirs.append(fake_run(runs, f"b{seed}", "baseline", seed, None, 0.0))
        dirs.append(fake_run(runs, f"f{seed}", "failover", seed, 80.0 + seed, 1.0, cpu=20.0))
    dirs.append(fake_run(runs, "bad", "failover", 7, 1.0, 1.0, verdict="INVALID"))
    out = tmp_path / "report"
    build(dirs, out)
    md = (out / "report.md").read_text()
    # MTTR of failover: seeds give 81..86 -> median 83.5 (the INVALID run's 1.0 is left out)
    row = next(line for line in md.splitlines() if line.startswith("| mininet | edge_crash "
                                                                   "| failover | 6 |"))
    assert "83.5 [" in row
    # paired against the baseline: availability after the fault +1 on all 6 seeds: the
    # exact two-sided signed-rank p is 2 / 2**6; stage CPU +10 s on every seed
    section = md.split("## Against the baseline")[1].split("\n## ")[0]
    paired = next(line for line in section.splitlines() if "| failover | 6 |" in line)
    cells = [c.strip() for c in paired.strip("|").split("|")]
    assert cells[4].startswith("1 ") and cells[4].endswith("p=0.0312")  # availability
    assert cells[7].startswith("10 ") and cells[7].endswith("p=0.0312")  # stage CPU s
    assert "INVALID or failed runs" in md and "stage died" in md
    assert "git_commit" in md
    for name in ("latency_ecdf.png", "mttd_mttr.png", "cost_benefit.png",
                 "timeline_edge_crash.png"):
        assert (out / "figures" / name).stat().st_size > 5000, name
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4


def test_report_of_a_directory_that_is_not_a_result_exits_2(tmp_path) -> None:
    p = entry("harness.report", str(tmp_path))
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        f"report error: DIR={str(tmp_path)!r}: not a run, sweep or bench directory (no "
        "summary.json, sweep.csv or pipeline.csv)"]
