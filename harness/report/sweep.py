"""A sweep as one table: `sweep.csv`, one row per job (its overrides, verdict, headline
metrics), written when a multirun ends, however many jobs failed.

Jobs are read from their directories (`<sweep>/<num>/`), not from the launcher, so
the table is the same whether jobs ran here one after another or as Ray tasks
elsewhere, and a job killed mid-way is a row that says so instead of a hole.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from harness.core.files import write_text_atomic

HEADLINE = ["availability", "availability_after_fault", "accuracy", "accuracy_after_fault",
            "mttd_ms", "mttr_ms", "cpu_s", "bytes_sent", "replicas", "n_scheduled", "n_ok"]


def job_row(job: Path) -> dict:
    """One job's row: overrides as columns, then its verdict and figures."""
    try:
        overrides = list(OmegaConf.load(job / ".hydra" / "overrides.yaml") or [])
    except OSError:
        overrides = []
    row: dict = {"job": job.name, "overrides": " ".join(overrides)}
    for o in overrides:
        key, _, value = o.partition("=")
        row[key.lstrip("+~")] = value
    summary, error = job / "summary.json", job / "error.txt"
    if summary.exists():
        s = json.loads(summary.read_text())
        row["verdict"] = s["verdict"]
        row["reasons"] = "; ".join(s.get("verdict_reasons", []))
        for k in HEADLINE:
            row[k] = s.get(k)
        lat = s.get("latency_ms") or {}
        row["p50_ms"], row["p99_ms"] = lat.get("p50"), lat.get("p99")
        row["backend"] = (s.get("backend") or "").rsplit(".", 1)[-1]
        row["host"] = (s.get("provenance") or {}).get("host")
        wall = s.get("wall_clock") or {}
        row["started_at"], row["ended_at"] = wall.get("start"), wall.get("end")
    elif error.exists():
        lines = error.read_text().strip().splitlines()
        row["verdict"], row["reasons"] = "FAILED", lines[-1] if lines else ""
    else:
        row["verdict"], row["reasons"] = "FAILED", "no summary.json or error.txt (killed?)"
    row["run_dir"] = str(job)
    return row


def concurrency(df: pd.DataFrame) -> pd.Series:
    """For each job, how many jobs of the sweep (itself included) ran on its host at some
    moment of its run: more than 1 means its timing was measured beside another
    emulation. NA for a job without a recorded span."""
    out = pd.Series(pd.NA, index=df.index, dtype="Int64")
    if "started_at" not in df:
        return out
    spans = df.dropna(subset=["started_at", "ended_at"])
    for i, job in spans.iterrows():
        same = spans[spans["host"] == job["host"]]
        peak = 0
        for t in same["started_at"]:  # the peak overlap begins at some job's start
            if job["started_at"] <= t < job["ended_at"]:
                peak = max(peak, int(((same["started_at"] <= t) & (same["ended_at"] > t)).sum()))
        out[i] = max(peak, 1)
    return out


def sweep_table(sweep_dir: Path) -> pd.DataFrame:
    jobs = sorted((d for d in sweep_dir.iterdir() if d.is_dir() and d.name.isdigit()),
                  key=lambda d: int(d.name))
    df = pd.DataFrame([job_row(j) for j in jobs])
    if len(df):
        df["concurrent_jobs"] = concurrency(df)
    return df


def write_sweep_table(sweep_dir: Path) -> Path:
    out = sweep_dir / "sweep.csv"
    write_text_atomic(out, sweep_table(sweep_dir).to_csv(index=False))
    return out
