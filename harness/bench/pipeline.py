"""Every technique under its faults, run as a user runs it (`python -m harness`), the same
seeds for all: medians over seeds and overheads against the baseline without faults.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness.report.stats import median

SMALL_NODES = "topology.nodes={d1:{mem_mb:150},e2:{mem_mb:64},c1:{mem_mb:200}}"
SLOW_REPLICA = "topology.links={d1-e2:{delay_ms:10},e1-e2:{delay_ms:10},e2-c1:{delay_ms:10}}"
# technique label -> overrides; each runs under the faults listed with it. FULL is every
# variant under every fault it answers (`--full`: 27 rows, ~24 minutes with 5 seeds);
# MATRIX, the default, each technique under its main fault and the fault-free rows its
# cost is read from (14 rows, ~12 minutes).
FULL = [
    ("baseline", ["technique=baseline"], ["none", "edge_crash"]),
    ("failover warm", ["technique=failover"], ["none", "edge_crash"]),
    # the same replica watched through its own calls instead of 25 ms probes (issue 11)
    ("failover warm passive", ["technique=failover", "technique.detector=passive"],
     ["none", "edge_crash", "edge_hang"]),
    ("failover active_active", ["technique=failover", "technique.mode=active_active"],
     ["none", "edge_crash"]),
    ("failover cold", ["technique=failover", "technique.mode=cold"], ["edge_crash"]),
    ("failover small variant",
     ["technique=failover", "technique.variant.middle=models/digits/middle_small.onnx"],
     ["edge_crash"]),
    ("structural", ["technique=structural"], ["none", "edge_crash", "edge_crash_recover"]),
    ("structural early exit",
     ["technique=structural", "technique.early_exit=models/digits/exit1.onnx"], ["edge_crash"]),
    ("reconfiguration", ["technique=reconfiguration"], ["none", "edge_crash"]),
    # re-partitioning where everything fits (the fastest move wins), and where no node
    # has room for the lost stage as a process of its own (a merge is the only way)
    ("reconfiguration repartition",
     ["technique=reconfiguration", "technique.mode=repartition"], ["edge_crash"]),
    ("reconfiguration repartition, small nodes",
     ["technique=reconfiguration", "technique.mode=repartition", SMALL_NODES], ["edge_crash"]),
    # the adaptive policy with the replica's path 30 ms slower: by the SLO it picks
    ("adaptive slo 25", ["technique=adaptive", SLOW_REPLICA, "technique.slo_ms=25"],
     ["edge_crash"]),
    ("adaptive slo 100", ["technique=adaptive", SLOW_REPLICA, "technique.slo_ms=100"],
     ["edge_crash"]),
    ("adaptive slo 25 +repartition",
     ["technique=adaptive", SLOW_REPLICA, "technique.slo_ms=25",
      "technique.actions=[failover,skip,repartition]"], ["edge_crash"]),
    ("sensing_redundancy", ["technique=sensing_redundancy"],
     ["none", "sensor_crash", "sensor_noise"]),
    ("baseline", ["technique=baseline"], ["sensor_crash", "sensor_noise"]),
]
DEFAULT_ROWS = {("baseline", "none"), ("baseline", "edge_crash"), ("failover warm", "none"),
                ("failover warm", "edge_crash"), ("failover active_active", "edge_crash"),
                ("structural", "none"), ("structural", "edge_crash"),
                ("reconfiguration", "none"), ("reconfiguration", "edge_crash"),
                ("reconfiguration repartition, small nodes", "edge_crash"),
                ("adaptive slo 25", "edge_crash"), ("sensing_redundancy", "none"),
                ("sensing_redundancy", "sensor_crash"), ("baseline", "sensor_crash")}
MATRIX = [(label, o, kept) for label, o, faults in FULL
          if (kept := [f for f in faults if (label, f) in DEFAULT_ROWS])]
# The gate's rows (`make gate`): the headline techniques under the crash, and the baseline
# without faults for latency; small enough for 6 seeds, each run by both sides, in about
# 9 minutes (the baseline under the crash only loses what it must: nothing to watch).
GATE_MATRIX = [
    ("baseline", ["technique=baseline"], ["none"]),
    ("failover warm", ["technique=failover"], ["edge_crash"]),
    ("structural", ["technique=structural"], ["edge_crash"]),
    ("reconfiguration", ["technique=reconfiguration"], ["edge_crash"]),
]
PIPELINE_KEYS = ["availability", "availability_after_fault", "availability_after_recovery",
                 "accuracy", "accuracy_after_fault", "mttd_ms", "mttr_ms", "cpu_s",
                 "bytes_sent", "replicas"]


def run_harness(overrides: list[str], timeout_s: float = 600,
                tree: Path | None = None) -> dict:
    """`python -m harness <overrides>` as a user runs it: its summary.json, or, when the
    run did not end with one (a crash, bad input, a timeout), a FAILED record saying why,
    so that one failed run never costs a bench the rows measured before and after it.
    `tree`: run the harness of another checkout (the gate's baseline commit) instead."""
    import os

    from harness.core.paths import REPO

    env = None
    if tree is not None:  # its package first, for this process and every stage it starts
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(tree), *filter(None, [os.environ.get("PYTHONPATH")])])}
    try:
        p = subprocess.run([sys.executable, "-m", "harness", *overrides], cwd=tree or REPO,
                           capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return failed(f"no result within {timeout_s:g} s (killed)")
    lines = p.stdout.strip().splitlines()
    run_dir = Path(lines[-1]) if lines else None  # 0 VALID, 1 INVALID: both have results
    if p.returncode not in (0, 1) or run_dir is None or not (run_dir / "summary.json").exists():
        err = (p.stderr + p.stdout).strip().splitlines()
        return failed(f"exit {p.returncode}: {err[-1] if err else 'no output'}")
    return json.loads((run_dir / "summary.json").read_text()) | {"run_dir": str(run_dir)}


def failed(reason: str) -> dict:
    """A run that produced no summary, as a row the bench keeps."""
    return {"verdict": "FAILED", "verdict_reasons": [reason], "run_dir": None,
            "latency_ms": {"p50": None, "p99": None}}


def valid(runs: list[dict]) -> list[dict]:
    """The runs whose figures count: INVALID and FAILED ones are listed, never averaged."""
    return [r for r in runs if r["verdict"] == "VALID"]


def applicable(extra: list[str], overrides: list[str]) -> list[str]:
    """The bench's extra overrides that apply to a row: all of them, except that an
    override of a technique's key (`technique.K=V`) goes only to rows whose technique
    has K (the health period of failover means nothing to the baseline)."""
    from omegaconf import OmegaConf

    from harness.core.paths import CONF_DIR

    tech = next((o.split("=", 1)[1] for o in overrides if o.startswith("technique=")), None)
    keys = set(OmegaConf.load(CONF_DIR / "technique" / f"{tech}.yaml")) if tech else set()
    out = []
    for o in extra:
        key = o.lstrip("+~").split("=", 1)[0]
        if key.startswith("technique.") and key.split(".")[1] not in keys:
            continue
        out.append(o)
    return out


def matrix_size(matrix: list, seeds: int, backends: tuple[str, ...]) -> int:
    return sum(len(f) for _, _, f in matrix) * seeds * len(backends)


def pipeline_rows(duration_s: float, seeds: int = 1, backends: tuple[str, ...] = ("mininet",),
                  matrix: list | None = None, extra: list[str] | None = None,
                  progress=None, sink=None, base: Path | None = None) -> list[dict]:
    """Every technique under its faults on device_edge_cloud, on each backend, the same
    seeds for all: medians over VALID seeds, and overheads relative to the same backend's
    baseline without faults. `extra` overrides go to every run; `progress(label)` is
    called after each run; `sink(row)` receives each run's row (per-seed figures, with its
    `side` and, if it failed, why) as soon as it ends. `base`: another checkout (the
    gate's baseline commit) run seed by seed beside this one, which of the two goes first
    alternating, so that both see the same machine; its runs (without `extra`) go to
    `sink` only."""
    rows = []
    for backend in backends:
        rows += _rows(backend, duration_s, seeds, matrix or MATRIX, extra or [], progress,
                      sink or (lambda row: None), base)
    return rows


def run_row(backend: str, label: str, faults: str, seed: int, side: str, mine: list[str],
            r: dict) -> dict:
    """One run as a row of runs.csv."""
    return {"backend": backend, "technique": label, "faults": faults, "seed": seed,
            "side": side, "verdict": r["verdict"], "overrides": " ".join(mine),
            "p50_ms": r["latency_ms"]["p50"], "p99_ms": r["latency_ms"]["p99"],
            **{k: r.get(k) for k in PIPELINE_KEYS}, "run_dir": r["run_dir"],
            "reason": why(r) if r["verdict"] != "VALID" else None}


def why(r: dict) -> str:
    """A run's verdict and its reasons, on one line."""
    return " ".join([r["verdict"], *map(str, r.get("verdict_reasons") or [])])


def _rows(backend: str, duration_s: float, seeds: int, matrix: list, extra: list[str],
          progress, sink, base: Path | None) -> list[dict]:
    rows = []
    for label, overrides, faults in matrix:
        for faults_name in faults:
            runs = []
            mine = applicable(extra, overrides)
            for seed in range(1, seeds + 1):
                args = ["topology=device_edge_cloud", "workload=digits", *overrides,
                        f"faults={faults_name}", f"run.duration_s={duration_s}",
                        f"seed={seed}", f"backend={backend}"]
                sides = [("current", None)] if base is None else \
                    [("base", base), ("current", None)][::1 if seed % 2 else -1]
                for side, tree in sides:  # the extra overrides are the current side's
                    r = run_harness(args + (mine if side == "current" else []), tree=tree)
                    if side == "current":
                        runs.append(r)
                    sink(run_row(backend, label, faults_name, seed, side,
                                 mine if side == "current" else [], r))
                    if progress is not None:
                        progress(f"{backend} {label} {faults_name} seed {seed}"
                                 + (f" ({side})" if base is not None else ""))
            good = valid(runs)
            row = {"backend": backend, "technique": label, "faults": faults_name,
                   "seeds": seeds, "valid": len(good),
                   "p50_ms": median([r["latency_ms"]["p50"] for r in good]),
                   "p99_ms": median([r["latency_ms"]["p99"] for r in good]),
                   "failed": "; ".join(f"seed {i}: {why(r)}" for i, r in enumerate(runs, 1)
                                       if r["verdict"] != "VALID") or None,
                   "run_dirs": [r["run_dir"] or "" for r in runs]}
            for k in PIPELINE_KEYS:
                row[k] = median([r.get(k) for r in good])
            rows.append(row)
    base_row = next((r for r in rows if r["technique"] == "baseline" and r["faults"] == "none"),
                    None)
    b = base_row or {"cpu_s": None, "bytes_sent": None, "p50_ms": None}
    for r in rows:
        r["cpu_vs_baseline"] = (r["cpu_s"] / b["cpu_s"]) if r["cpu_s"] and b["cpu_s"] else None
        r["bytes_vs_baseline"] = (r["bytes_sent"] / b["bytes_sent"]) \
            if r["bytes_sent"] and b["bytes_sent"] else None
        r["p50_vs_baseline_ms"] = (r["p50_ms"] - b["p50_ms"]) \
            if r["p50_ms"] is not None and b["p50_ms"] is not None else None
    return rows


PIPELINE_COLS = ["backend", "technique", "faults", "valid", "availability",
                 "availability_after_fault", "p50_ms", "p99_ms", "accuracy",
                 "accuracy_after_fault", "mttd_ms", "mttr_ms", "replicas", "cpu_vs_baseline",
                 "bytes_vs_baseline", "p50_vs_baseline_ms"]


