"""What a fault did and how fast the technique got over it, from the run's tables.

Pure functions of the request table, the event rows and the fault time, so
each figure can be checked on a small table whose answer is worked out by hand
(tests/test_metrics.py).
"""

from __future__ import annotations

import pandas as pd


def recovery(df: pd.DataFrame, fault_at_s: float) -> dict:
    """When a stream of requests got over the fault, from its table alone.

    The outage starts with the first request scheduled after the fault that did not end
    ok (the first the fault cost) and ends with the first ok answer to a request
    scheduled after that one (of several scheduled at the same instant, the first
    answered: independent of row order). mttr_ms is from the fault to that answer; 0 when
    the fault cost no request (nothing to recover from: the request schedule's phase
    cannot add a wait for the next request to it); None when no request after the first
    loss was answered ok. first_loss_ms: fault to the first lost request's schedule.
    resolution_ms: the stream's median spacing, the error an instant read off it can have.
    """
    part = df[df["scheduled_s"] >= fault_at_s].sort_values("scheduled_s", kind="stable")
    times = df["scheduled_s"].drop_duplicates().sort_values()
    out = {"mttr_ms": None, "first_loss_ms": None,
           "resolution_ms": float(times.diff().median()) * 1000 if len(times) > 1 else None}
    if not len(part):
        return out
    lost = part[part["status"] != "ok"]
    if not len(lost):
        return out | {"mttr_ms": 0.0}
    first_loss = float(lost["scheduled_s"].min())
    ok = part[(part["status"] == "ok") & (part["scheduled_s"] > first_loss)]
    out["first_loss_ms"] = (first_loss - fault_at_s) * 1000
    if len(ok):
        first_ok = ok[ok["scheduled_s"] == ok["scheduled_s"].min()]
        out["mttr_ms"] = (float(first_ok["completed_s"].min()) - fault_at_s) * 1000
    return out


def resilience(df: pd.DataFrame, events: list[dict], fault_at_s: float | None,
               end_s: float, canary: pd.DataFrame | None = None) -> dict:
    """What a fault did and how fast the technique got over it, counted from the moment
    the fault began (`fault_at_s`: its action's start; a crash takes 15-40 ms to apply,
    and what a technique sees or loses meanwhile is the fault's doing).

    mttd_ms: fault to the technique's first detection event (null if it has none);
    mttr_ms: `recovery` of the canary stream when the run has one (`measure.canary_hz`:
    a light request every few ms, so the instant is known to a few ms), else of the
    requests; mttr_source and mttr_resolution_ms say which and to what resolution, and
    mttr_requests_ms keeps the requests' figure beside a canary's;
    availability_after_recovery: of the requests scheduled from then on;
    unavailable_ms: the share of post-fault requests not ok, times the
    post-fault time (the expected time users saw no timely answer).
    """
    keys = ("mttd_ms", "mttr_ms", "mttr_requests_ms", "mttr_source", "mttr_resolution_ms",
            "first_loss_ms", "unavailable_ms", "availability_after_fault",
            "accuracy_after_fault", "degraded_after_fault", "availability_after_recovery")
    if fault_at_s is None:
        return {"fault_at_s": None, **dict.fromkeys(keys)}
    part = df[df["scheduled_s"] >= fault_at_s].sort_values("scheduled_s")
    answered = part[part["status"].isin(["ok", "late"])]
    ok = part[part["status"] == "ok"]
    detect = [e["t_s"] for e in events if e["kind"] == "detect" and e["t_s"] >= fault_at_s]
    by_requests = recovery(df, fault_at_s)
    use = recovery(canary, fault_at_s) if canary is not None and len(canary) else by_requests
    mttr_ms = use["mttr_ms"]
    recovered = (part[part["scheduled_s"] >= fault_at_s + mttr_ms / 1000]
                 if mttr_ms is not None else part.iloc[0:0])
    return {
        "fault_at_s": fault_at_s,
        "mttd_ms": (min(detect) - fault_at_s) * 1000 if detect else None,
        "mttr_ms": mttr_ms,
        "mttr_requests_ms": by_requests["mttr_ms"],
        "mttr_source": "canary" if use is not by_requests else "requests",
        "mttr_resolution_ms": use["resolution_ms"],
        "first_loss_ms": use["first_loss_ms"],
        "unavailable_ms": (1 - len(ok) / len(part)) * (end_s - fault_at_s) * 1000
        if len(part) else None,
        "availability_after_fault": len(ok) / len(part) if len(part) else None,
        "accuracy_after_fault": float(answered["correct"].mean()) if len(answered) else None,
        "degraded_after_fault": float(answered["degraded"].fillna(False).mean())
        if len(answered) else None,
        # once the technique has recovered: do the requests stay answered in time?
        "availability_after_recovery": float((recovered["status"] == "ok").mean())
        if len(recovered) else None,
    }


def breakdown_ms(b: dict | None, t0: float, fault_at: float | None,
                 mttr_ms: float | None) -> dict | None:
    """A technique's recovery phases from the fault on (`b`: `t_detect`, monotonic, and
    `*_ms` phases; `t0`: run start, monotonic). `reroute_ms` (replica ready to the first
    ok answer: reconnect and the request itself) closes the sum to MTTR; none when the
    fault cost no request (MTTR 0: nothing was rerouted in anyone's sight)."""
    if not b or fault_at is None:
        return None
    out = {"detection_ms": (b["t_detect"] - (t0 + fault_at)) * 1000,
           **{k: v for k, v in b.items() if k.endswith("_ms")}}
    if mttr_ms:
        out["reroute_ms"] = mttr_ms - sum(out.values())
    return out


def overheads(before: tuple[dict, dict], after: tuple[dict, dict], n_instances: int,
              n_stages: int) -> dict:
    """Costs to set against the baseline of the same seed. `before`/`after`: (CPU seconds
    by node, link counters {link: {direction: {fwd_bytes, ...}}}) at the start and end."""
    cpu0, links0 = before
    cpu1, links1 = after
    sent = None
    if links1:
        sent = 0
        for name, dirs in links1.items():
            for d, c in dirs.items():
                sent += c.get("fwd_bytes", 0) - links0.get(name, {}).get(d, {}).get("fwd_bytes", 0)
    return {
        "cpu_s": sum(cpu1[n] - cpu0.get(n, 0.0) for n in cpu1),
        "cpu_s_by_node": {n: cpu1[n] - cpu0.get(n, 0.0) for n in cpu1},
        "bytes_sent": sent,
        "replicas": n_instances - n_stages,
    }
