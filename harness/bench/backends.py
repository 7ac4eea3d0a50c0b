"""What a backend costs: the network up and down, and a stage's cold start, per backend.

Runs the baseline pipeline on device_edge_cloud a few times on each backend (as a user
runs it) and reads the summary's `timings` and each stage's startup instants
(`stage.ready` events): spawn -> interpreter and imports -> model loaded -> first
inference -> serving. On the docker backend `nodes_s` is the containers' start
(created in parallel) and a stage's process start includes entering its container. On
mininet the stages start afresh (`backend.zygote=false`): a cold start, as on a device,
not the fork from the zygote a deployment uses.
"""

from __future__ import annotations

import json
import statistics

import pandas as pd

from harness.bench.pipeline import run_harness, valid, why

TARGETS = {"docker": {"up_s": 5.0, "teardown_s": 2.0}}  # issue 8: containers up / down


def _phases(run_dir: str) -> list[dict]:
    ev = pd.read_parquet(f"{run_dir}/events.parquet")
    out = []
    for d in ev[ev["kind"] == "stage.ready"]["detail"]:
        i = json.loads(d)
        out.append({"process_start_ms": (i["t_load"] - i["t_spawn"]) * 1000,
                    "model_load_ms": (i["t_loaded"] - i["t_load"]) * 1000,
                    "first_inference_ms": (i["t_first_inference"] - i["t_loaded"]) * 1000,
                    "spawn_to_ready_ms": (i["t_ready"] - i["t_spawn"]) * 1000})
    return out


def backend_rows(backends: list[str], repeats: int = 3) -> list[dict]:
    rows = []
    for backend in backends:
        runs = [run_harness(["topology=device_edge_cloud", "workload=digits",
                             "technique=baseline", "faults=none", "run.duration_s=2",
                             f"backend={backend}", f"seed={i + 1}",
                             *(["backend.zygote=false"] if backend == "mininet" else [])])
                for i in range(repeats)]
        good = valid(runs)
        row: dict = {"backend": backend, "runs": repeats, "valid": len(good),
                     "failed": "; ".join(why(r) for r in runs if r not in good) or None}
        for k in ("nodes_s", "links_s", "up_s", "teardown_s"):
            row[k] = statistics.median(r["timings"][k] for r in good) if good else None
        phases = [p for r in good for p in _phases(r["run_dir"])]
        for k in ("process_start_ms", "model_load_ms", "first_inference_ms",
                  "spawn_to_ready_ms"):
            row[k] = statistics.median(p[k] for p in phases) if phases else None
        targets = TARGETS.get(backend, {})
        row["targets"] = ", ".join(f"{k} <= {v:g}" for k, v in targets.items()) or "-"
        row["ok"] = row["valid"] == repeats and all(row[k] <= v for k, v in targets.items())
        rows.append(row)
    return rows


BACKEND_COLS = ["backend", "valid", "nodes_s", "links_s", "up_s", "teardown_s",
                "process_start_ms", "model_load_ms", "first_inference_ms", "spawn_to_ready_ms",
                "targets", "ok"]
