"""From the schedule and the sensors' records to one outcome per request, and the summary.

Every scheduled request ends in exactly one status: ok (answered within the
SLO), late (answered after it), failed (an error came back) or lost (no answer
by the end of the run plus the grace period, including requests no sensor
recorded at all). Latency counts from the *scheduled* time, not the send time,
so a stalled load generator cannot make the system look fast.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from harness.workload.schedule import Scheduled

REQUEST_COLUMNS = ["request_id", "sensor", "sample_id", "scheduled_s", "sent_s", "completed_s",
                   "latency_ms", "status", "prediction", "label", "correct", "path", "degraded",
                   "joined", "error"]
STATUSES = ("ok", "late", "failed", "lost")


def read_records(paths: list[Path]) -> dict[int, dict]:
    """Sensor JSONL records by request id; a torn last line (crash) is skipped. When
    several sensors sent the same request (redundant sensing), the earliest answer wins."""
    out: dict[int, dict] = {}
    for p in paths:
        if not p.exists():
            continue
        for line in p.read_text().splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            rid = int(r["request_id"])
            if rid not in out or _better(r, out[rid]):
                out[rid] = r
    return out


def _better(a: dict, b: dict) -> bool:
    rank = {"answer": 0, "error": 1, "lost": 2}
    ka = (rank.get(a.get("outcome"), 3), a.get("completed_s") or float("inf"))
    kb = (rank.get(b.get("outcome"), 3), b.get("completed_s") or float("inf"))
    return ka < kb


def outcomes(schedule: list[Scheduled], records: dict[int, dict], labels: dict[int, int],
             slo_ms: float, answer_by_s: float) -> pd.DataFrame:
    rows = []
    for s in schedule:
        r = records.get(s.request_id, {})
        outcome = r.get("outcome")
        completed = r.get("completed_s") if outcome == "answer" else None
        if outcome == "answer" and completed is not None and completed > answer_by_s:
            outcome = "lost"  # arrived after the harness stopped waiting
            completed = None
        latency = None if completed is None else (completed - s.scheduled_s) * 1000
        if outcome == "answer":
            status = "ok" if latency is not None and latency <= slo_ms else "late"
        elif outcome == "error":
            status = "failed"
        else:
            status = "lost"
        pred = r.get("prediction") if completed is not None else None
        label = labels.get(s.sample_id)
        rows.append({
            "request_id": s.request_id, "sensor": s.sensor, "sample_id": s.sample_id,
            "scheduled_s": s.scheduled_s, "sent_s": r.get("sent_s"), "completed_s": completed,
            "latency_ms": latency, "status": status, "prediction": pred, "label": label,
            "correct": None if pred is None else bool(pred == label),
            "path": r.get("path") if completed is not None else None,
            "degraded": bool(r.get("degraded")) if completed is not None else None,
            # a join stage's inputs that arrived ("emb_acc+emb_gyro"); None: no join
            "joined": r.get("joined") if completed is not None else None,
            "error": r.get("error"),
        })
    df = pd.DataFrame(rows, columns=REQUEST_COLUMNS)
    for col in ("prediction", "label"):
        df[col] = df[col].astype("Int64")
    df["correct"] = df["correct"].astype("boolean")
    df["degraded"] = df["degraded"].astype("boolean")
    return df


def _pct(x: pd.Series, q: float) -> float | None:
    x = x.dropna()
    return None if x.empty else float(np.percentile(x, q))


def latency_summary(lat: pd.Series) -> dict:
    return {"p50": _pct(lat, 50), "p90": _pct(lat, 90), "p95": _pct(lat, 95),
            "p99": _pct(lat, 99), "max": None if lat.dropna().empty else float(lat.max())}


def summarize(df: pd.DataFrame) -> dict:
    n = len(df)
    counts = {s: int((df["status"] == s).sum()) for s in STATUSES}
    answered = df[df["status"].isin(["ok", "late"])]
    late_by = (df["sent_s"] - df["scheduled_s"]) * 1000
    out = {
        "n_scheduled": n,
        **{f"n_{s}": counts[s] for s in STATUSES},
        "availability": counts["ok"] / n if n else None,
        "latency_ms": latency_summary(answered["latency_ms"]),
        "accuracy": float(answered["correct"].mean()) if len(answered) else None,
        "n_answered": len(answered),
        "lateness_ms": {"p50": _pct(late_by, 50), "p99": _pct(late_by, 99),
                        "max": None if late_by.dropna().empty else float(late_by.max())},
    }
    if answered["joined"].notna().any():  # what each mix of a join's inputs was worth
        out["accuracy_by_joined"] = {
            str(k): {"n": len(g), "accuracy": float(g["correct"].mean())}
            for k, g in answered.groupby("joined")}
    assert n == sum(counts.values())  # the accounting identity, always
    return out


def clean_json(obj):
    """NaN -> None, so summary.json is strict JSON."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: clean_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [clean_json(v) for v in obj]
    return obj
