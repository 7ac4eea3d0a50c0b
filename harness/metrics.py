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

from harness.workload import Scheduled

REQUEST_COLUMNS = ["request_id", "sensor", "sample_id", "scheduled_s", "sent_s", "completed_s",
                   "latency_ms", "status", "prediction", "label", "correct", "path", "degraded",
                   "error"]
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
    assert n == sum(counts.values())  # the accounting identity, always
    return out


def resilience(df: pd.DataFrame, events: list[dict], fault_at_s: float | None,
               end_s: float) -> dict:
    """What a fault did and how fast the technique got over it.

    mttd_ms: fault to the technique's first detection event (null if it has none);
    mttr_ms: fault to the completion of the first request scheduled after it that
    ends ok; availability_after_recovery: of the requests scheduled from then on;
    unavailable_ms: the share of post-fault requests not ok, times the
    post-fault time (the expected time users saw no timely answer).
    """
    keys = ("mttd_ms", "mttr_ms", "unavailable_ms", "availability_after_fault",
            "accuracy_after_fault", "degraded_after_fault", "availability_after_recovery")
    if fault_at_s is None:
        return {"fault_at_s": None, **dict.fromkeys(keys)}
    part = df[df["scheduled_s"] >= fault_at_s].sort_values("scheduled_s")
    answered = part[part["status"].isin(["ok", "late"])]
    ok = part[part["status"] == "ok"]
    detect = [e["t_s"] for e in events if e["kind"] == "detect" and e["t_s"] >= fault_at_s]
    mttr_ms = (float(ok["completed_s"].iloc[0]) - fault_at_s) * 1000 if len(ok) else None
    recovered = (part[part["scheduled_s"] >= fault_at_s + mttr_ms / 1000]
                 if mttr_ms is not None else part.iloc[0:0])
    return {
        "fault_at_s": fault_at_s,
        "mttd_ms": (min(detect) - fault_at_s) * 1000 if detect else None,
        "mttr_ms": mttr_ms,
        "unavailable_ms": (1 - len(ok) / len(part)) * (end_s - fault_at_s) * 1000
        if len(part) else None,
        "availability_after_fault": len(ok) / len(part) if len(part) else None,
        "accuracy_after_fault": float(answered["correct"].mean()) if len(answered) else None,
        "degraded_after_fault": float(answered["degraded"].fillna(False).mean())
        if len(answered) else None,
        # once the first request after the fault is answered in time: does it stay so?
        "availability_after_recovery": float((recovered["status"] == "ok").mean())
        if len(recovered) else None,
    }


def clean_json(obj):
    """NaN -> None, so summary.json is strict JSON."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: clean_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [clean_json(v) for v in obj]
    return obj
