"""A run as a timeline in the Chrome trace-event format (`trace.json`), for
ui.perfetto.dev or chrome://tracing.

One process per node. A request is an async slice on its sensor's node, from when
it was sent to when its answer arrived (requests overlap, so async events), with its
status, path and latency; a request without an answer is an instant at its
scheduled time. Events (faults, detections, route changes, recoveries, stages
ready, OOM kills) are instants on the node they concern, or on the `run` track.
Link throughput (from `links.parquet`, when the shaper counts) is a counter per link
and direction. Time 0 is the run's start (the first request's schedule).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from harness.core.files import write_text_atomic

RUN_PID = 0
CATEGORIES = {"fault": "fault", "detect": "detection", "reconfigure": "route",
              "recover": "recovery", "stage": "stage", "node": "node", "technique": "technique",
              "run": "run"}


def _us(t_s: float, shift: float) -> float:
    return round((t_s + shift) * 1e6, 1)


def build_trace(run_dir: Path) -> dict:
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    ev = pd.read_parquet(run_dir / "events.parquet")
    req_file = run_dir / "requests.parquet"
    req = pd.read_parquet(req_file) if req_file.exists() else pd.DataFrame()
    links_file = run_dir / "links.parquet"
    links = pd.read_parquet(links_file) if links_file.exists() else pd.DataFrame()
    tiers = ["sensor", "device", "edge", "cloud", "host"]
    info = (summary.get("network") or {}).get("nodes", {})
    nodes = sorted(info, key=lambda n: (tiers.index(info[n].get("role", "host"))
                                        if info[n].get("role") in tiers else len(tiers), n))
    pid = {n: i + 1 for i, n in enumerate(nodes)}
    # ts must not be negative: stages get ready before the run's t0
    shift = max(0.0, -float(ev["t_s"].min())) if len(ev) else 0.0
    out: list[dict] = [{"ph": "M", "name": "process_name", "pid": RUN_PID,
                        "args": {"name": "run (faults, links)"}}]
    out += [{"ph": "M", "name": "process_name", "pid": p, "args": {"name": f"node {n}"}}
            for n, p in pid.items()]
    out += [{"ph": "M", "name": "process_sort_index", "pid": p, "args": {"sort_index": p}}
            for p in [RUN_PID, *pid.values()]]
    for r in req.itertuples(index=False):
        sensor = str(r.sensor).split("+")[0]
        where = {"pid": pid.get(sensor, RUN_PID), "tid": 1, "cat": "request",
                 "name": f"request {r.request_id}", "id": int(r.request_id)}
        args = {"status": r.status, "path": r.path, "latency_ms": r.latency_ms,
                "sample_id": int(r.sample_id), "correct": r.correct, "error": r.error,
                "scheduled_s": r.scheduled_s}
        if pd.notna(r.completed_s) and pd.notna(r.sent_s):
            out.append({**where, "ph": "b", "ts": _us(r.sent_s, shift), "args": args})
            out.append({**where, "ph": "e", "ts": _us(r.completed_s, shift)})
        else:
            out.append({"pid": where["pid"], "tid": 2, "cat": "request", "ph": "i", "s": "t",
                        "name": f"request {r.request_id} {r.status}",
                        "ts": _us(r.scheduled_s, shift), "args": args})
    for e in ev.itertuples(index=False):
        target = str(e.target)
        cat = CATEGORIES.get(str(e.kind).split(".")[0], "event")
        on_node = target in pid
        out.append({"ph": "i", "s": "p" if on_node else "g", "cat": cat, "name":
                    f"{e.kind} {target}".strip(), "pid": pid.get(target, RUN_PID), "tid": 0,
                    "ts": _us(e.t_s, shift), "args": json.loads(e.detail or "{}")})
    if len(links):
        for (link, d), g in links.sort_values("t_s").groupby(["link", "dir"]):
            t, b = g["t_s"].to_numpy(), g["fwd_bytes"].to_numpy()
            for i in range(1, len(g)):
                if t[i] <= t[i - 1]:
                    continue
                mbit = (b[i] - b[i - 1]) * 8 / (t[i] - t[i - 1]) / 1e6
                out.append({"ph": "C", "pid": RUN_PID, "name": f"link {link} {d} Mbit/s",
                            "ts": _us(t[i], shift), "args": {"Mbit/s": round(mbit, 4)}})
    return {"traceEvents": out, "displayTimeUnit": "ms",
            "otherData": {"run_dir": str(run_dir), "verdict": summary.get("verdict"),
                          "time_zero": f"run start = {shift:.6f} s on this timeline",
                          "provenance": summary.get("provenance")}}


def write_trace(run_dir: Path) -> Path:
    out = Path(run_dir) / "trace.json"
    write_text_atomic(out, json.dumps(build_trace(run_dir), default=str))
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.trace RUN_DIR...`; exit 2 naming a directory that is not a run."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m harness.trace",
                                 description="Write RUN_DIR/trace.json (Chrome trace-event "
                                             "format: ui.perfetto.dev, chrome://tracing).")
    ap.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR")
    a = ap.parse_args(argv)
    for d in a.run_dirs:
        if not (d / "summary.json").is_file() or not (d / "events.parquet").is_file():
            print(f"trace error: RUN_DIR={str(d)!r}: not a run directory (needs summary.json "
                  "and events.parquet)", file=sys.stderr)
            return 2
    from harness.core import access

    for d in a.run_dirs:
        access.use_like(d)  # trace.json as readable as the run it shows
        print(write_trace(d))
    return 0
