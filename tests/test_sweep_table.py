"""sweep.csv: one row per job of a multirun, whatever happened to each job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pandas as pd
import pytest

from harness.report.sweep import job_row, sweep_table
from tests.helpers import PY, REPO, entry, harness_cmd, root_only


def _job(root, num: int, overrides: list[str], summary: dict | None = None,
         error: str | None = None):
    d = root / str(num)
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if summary is not None:
        (d / "summary.json").write_text(json.dumps(summary))
    if error is not None:
        (d / "error.txt").write_text(error)
    return d


def test_rows_for_valid_failed_and_killed_jobs(tmp_path) -> None:
    _job(tmp_path, 0, ["technique=baseline", "seed=1"],
         {"verdict": "VALID", "verdict_reasons": [], "availability": 0.5, "mttr_ms": None,
          "latency_ms": {"p50": 5.0, "p99": 9.0}, "backend": "x.MininetBackend"})
    _job(tmp_path, 1, ["technique=failover", "seed=1"],
         error="Traceback...\nRuntimeError: stage middle on e1 exited (-9)\n")
    _job(tmp_path, 10, ["technique=failover", "seed=2"])  # killed: nothing written
    df = sweep_table(tmp_path)
    assert list(df["job"]) == ["0", "1", "10"]  # numeric order
    assert list(df["technique"]) == ["baseline", "failover", "failover"]
    assert list(df["verdict"]) == ["VALID", "FAILED", "FAILED"]
    assert df["reasons"].iloc[1] == "RuntimeError: stage middle on e1 exited (-9)"
    assert "killed" in df["reasons"].iloc[2]
    assert df["availability"].iloc[0] == 0.5 and df["p50_ms"].iloc[0] == 5.0
    assert df["backend"].iloc[0] == "MininetBackend"
    assert job_row(tmp_path / "0")["overrides"] == "technique=baseline seed=1"


def _timed(root, num: int, host: str, start: float, end: float) -> None:
    _job(root, num, [f"seed={num}"],
         {"verdict": "VALID", "provenance": {"host": host},
          "wall_clock": {"start": start, "end": end}})


def test_concurrent_jobs_counts_overlaps_per_host(tmp_path) -> None:
    _timed(tmp_path, 0, "a", 0.0, 10.0)   # overlaps 1 and 2, but 1 and 2 do not overlap
    _timed(tmp_path, 1, "a", 2.0, 4.0)
    _timed(tmp_path, 2, "a", 5.0, 12.0)
    _timed(tmp_path, 3, "a", 12.0, 13.0)  # starts as 2 ends: alone
    _timed(tmp_path, 4, "b", 0.0, 13.0)   # another host: never counted with host a
    _job(tmp_path, 5, ["seed=5"], error="config error: x=1: no\n")  # no span: NA
    df = sweep_table(tmp_path)
    assert list(df["concurrent_jobs"].iloc[:5]) == [2, 2, 2, 1, 1]
    assert pd.isna(df["concurrent_jobs"].iloc[5])
    assert list(df["host"].iloc[:5]) == ["a", "a", "a", "a", "b"]


@pytest.mark.needs_root
@root_only
def test_a_sweep_with_a_failing_job_still_gets_its_table() -> None:
    p = harness_cmd("-m", "topology=pair", "run.duration_s=1", "network.delay_ms=1,-5")
    assert p.returncode == 2, p.stderr[-1000:]
    sweep = p.stdout.strip().splitlines()[-1]
    df = pd.read_csv(f"{sweep}/sweep.csv")
    assert len(df) == 2
    assert list(df["network.delay_ms"]) == [1, -5]
    assert list(df["verdict"]) == ["VALID", "FAILED"]
    assert df["reasons"].iloc[1] == "config error: network.delay_ms=-5.0: must be >= 0"


@pytest.mark.needs_root
@root_only
def test_a_sweep_killed_mid_job_keeps_the_finished_jobs(tmp_path) -> None:
    """kill -9 of a local sweep while its second job runs: the first job's results stay
    whole, harness.clean removes the second's network, and a report of the sweep
    directory rebuilds sweep.csv with the killed job as a FAILED row."""
    sweep = tmp_path / "sweep"
    p = subprocess.Popen([PY, "-m", "harness", "-m", "topology=pair", "run.duration_s=4",
                          "seed=1,2,3", f"hydra.sweep.dir={sweep}"], cwd=REPO,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (sweep / "1" / ".hydra").is_dir():
            time.sleep(0.1)
        time.sleep(1.5)  # the second job's network is up, its run going
        assert p.poll() is None, "the sweep ended before it could be killed"
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    finally:
        if p.poll() is None:
            p.kill()
    first = json.loads((sweep / "0" / "summary.json").read_text())
    assert first["verdict"] == "VALID"
    clean = entry("harness.clean")
    assert "cleaned hx" in clean.stdout, clean.stdout
    assert not (sweep / "sweep.csv").exists()
    r = entry("harness.report", str(sweep))
    assert r.returncode == 0, r.stderr[-2000:]
    df = pd.read_csv(sweep / "sweep.csv")
    assert list(df["job"]) == [0, 1], df
    assert list(df["verdict"]) == ["VALID", "FAILED"]
    assert "killed" in df["reasons"].iloc[1]
