"""The runs behind a report: from a run, a sweep or a bench directory, one row per run.

A bench's `pipeline.csv` and a sweep's `sweep.csv` name their runs; a run directory is
itself. Each row carries what groups runs (backend, technique label, faults, seed),
the verdict with its reasons, and the headline metrics of its summary. A sweep job
that failed before writing a summary is a row too (verdict FAILED), so it shows up.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from harness.core.config import ConfigError
from harness.report.sweep import write_sweep_table

METRICS = ["availability", "availability_after_fault", "accuracy", "accuracy_after_fault",
           "mttd_ms", "mttr_ms", "cpu_s", "bytes_sent", "replicas", "fault_at_s", "slo_ms"]
GROUP = ["backend", "faults", "technique"]
SWEEP_AXES_NOT_LABELS = {"seed", "faults", "backend"}


def run_row(run_dir: Path, label: str | None = None) -> dict:
    s = json.loads((Path(run_dir) / "summary.json").read_text())
    lat = s.get("latency_ms") or {}
    row = {"run_dir": str(run_dir), "backend": (s.get("backend") or "").rsplit(".", 1)[-1]
           .removesuffix("Backend").lower() or "?",
           "technique": label or s.get("technique") or "-", "faults": s.get("faults") or "-",
           "seed": s.get("seed"), "verdict": s.get("verdict"),
           "reasons": "; ".join(s.get("verdict_reasons") or []),
           "p50_ms": lat.get("p50"), "p99_ms": lat.get("p99")}
    row.update({k: s.get(k) for k in METRICS})
    # the harness's own CPU (its process and helpers): is it the bottleneck it measures?
    fp = s.get("footprint") or {}
    row["harness_cpu_s"] = (None if not fp else fp["harness_cpu_s"] + sum(
        (fp.get(k) or {}).get("cpu_s", 0.0) for k in ("delay_line", "zygote")))
    row["provenance"] = s.get("provenance")
    return row


def _bench_rows(d: Path) -> list[dict]:
    rows = []
    for r in pd.read_csv(d / "pipeline.csv").itertuples(index=False):
        for run_dir in str(r.run_dirs).split(";"):
            if run_dir and (Path(run_dir) / "summary.json").exists():
                rows.append(run_row(Path(run_dir), str(r.technique)))
    return rows


def _text(v: object) -> str:
    return "-" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v)


def _sweep_rows(d: Path) -> list[dict]:
    rows = []
    for r in pd.read_csv(d / "sweep.csv").to_dict("records"):
        axes = [o for o in str(r.get("overrides") or "").split()
                if o.partition("=")[0] not in SWEEP_AXES_NOT_LABELS]
        label = " ".join(o.removeprefix("technique=") for o in axes) or None
        run_dir = Path(str(r["run_dir"]))
        if (run_dir / "summary.json").exists():
            rows.append(run_row(run_dir, label))
        else:
            rows.append({"run_dir": str(run_dir), "technique": label or "-",
                         "faults": _text(r.get("faults")), "backend": _text(r.get("backend")),
                         "seed": r.get("seed"), "verdict": "FAILED",
                         "reasons": _text(r.get("reasons"))})
        rows[-1]["concurrent_jobs"] = r.get("concurrent_jobs")
    return rows


def collect(dirs: list[Path]) -> pd.DataFrame:
    """Every run under `dirs`; ConfigError naming a directory that is none of the three."""
    rows: list[dict] = []
    for d in map(Path, dirs):
        if (d / "pipeline.csv").is_file():
            rows += _bench_rows(d)
        elif (d / "sweep.csv").is_file():
            rows += _sweep_rows(d)
        elif (d / "multirun.yaml").is_file():
            # a sweep that never reached its end (killed): its table, from the job folders
            write_sweep_table(d)
            rows += _sweep_rows(d)
        elif (d / "summary.json").is_file():
            rows.append(run_row(d))
        else:
            raise ConfigError(f"DIR={str(d)!r}: not a run, sweep or bench directory (no "
                              "summary.json, sweep.csv or pipeline.csv)")
    df = pd.DataFrame(rows)
    if len(df):
        df["valid"] = df["verdict"] == "VALID"
    return df


def requests_of(run_dir: str) -> pd.DataFrame:
    f = Path(run_dir) / "requests.parquet"
    return pd.read_parquet(f) if f.exists() else pd.DataFrame()
