"""What MTTR means (README "What MTTR means"), on tables worked out by hand (no root): the
outage from the fault to the first ok answer after the first request the fault cost, 0
when it cost none, independent of the order of the table's rows and, read off a canary
stream, of the phase of the request schedule."""

from __future__ import annotations

import pandas as pd
import pytest

from harness.measure.metrics.outcomes import outcomes
from harness.measure.metrics.resilience import resilience
from harness.workload.schedule import Scheduled


def test_mttr_with_requests_scheduled_at_the_same_instant() -> None:
    """Two cameras replay one recorded timeline: requests in pairs at 0.0, 0.5, 1.0, 1.5 s.

    fault at 0.25 s; the pair at 0.5 s fails; the pair at 1.0 s: s1's answer at 1.08 s,
    s2's at 1.03 s (both ok) -> recovered at 1.03 s: MTTR 780 ms, whatever the order of
    the table's rows.
    """
    sched = [Scheduled(2 * k + i, s, k, 0.5 * k) for k in range(4)
             for i, s in enumerate(["s1", "s2"])]
    recs = {rid: {"request_id": rid, "sent_s": s.scheduled_s, "outcome": "answer",
                  "completed_s": s.scheduled_s + 0.03, "prediction": 0}
            for rid, s in enumerate(sched)}
    for rid in (2, 3):
        recs[rid] = {"request_id": rid, "outcome": "error", "completed_s": 0.51,
                     "error": "UNAVAILABLE"}
    recs[4]["completed_s"] = 1.08
    recs[5]["completed_s"] = 1.03
    d = outcomes(sched, recs, {k: 0 for k in range(4)}, slo_ms=100.0, answer_by_s=2.0)
    for table in (d, d.iloc[::-1]):
        r = resilience(table, [], 0.25, 2.0)
        assert r["mttr_ms"] == pytest.approx(780), table["request_id"].tolist()
        assert r["first_loss_ms"] == pytest.approx(250)
        # from 1.03 s on: the pair at 1.5 s, both ok
        assert r["availability_after_recovery"] == 1.0
        assert r["availability_after_fault"] == pytest.approx(4 / 6)
        assert r["mttr_source"] == "requests" and r["mttr_resolution_ms"] == pytest.approx(500)


def stream(period_s: float, phase_s: float, fault_s: float, down_s: float | None,
           end_s: float = 2.0, latency_s: float = 0.003) -> pd.DataFrame:
    """A request every period_s from phase_s; those scheduled while the technique is down
    ([fault_s, fault_s + down_s)) fail, the rest are answered after latency_s."""
    n = int((end_s - phase_s) / period_s)
    sched = [Scheduled(i, "s1", 0, round(phase_s + i * period_s, 9)) for i in range(n)]
    recs = {}
    for s in sched:
        down = down_s is not None and fault_s <= s.scheduled_s < fault_s + down_s
        recs[s.request_id] = ({"request_id": s.request_id, "outcome": "error",
                               "completed_s": s.scheduled_s + 0.001, "error": "UNAVAILABLE"}
                              if down else
                              {"request_id": s.request_id, "outcome": "answer",
                               "completed_s": s.scheduled_s + latency_s, "prediction": 0})
    return outcomes(sched, recs, {0: 0}, slo_ms=100.0, answer_by_s=end_s + 1)


def test_a_technique_that_loses_nothing_has_no_outage_whatever_the_phase() -> None:
    """Active-active: every request after the fault answered. The old definition (fault
    to the first ok answer scheduled after it) read the wait for the next request:
    0-50 ms by the schedule's phase. Now 0 for every phase."""
    for phase in (0.0, 0.010, 0.025, 0.040):
        r = resilience(stream(0.05, phase, 0.7, None), [], 0.7, 2.0)
        assert r["mttr_ms"] == 0.0 and r["first_loss_ms"] is None, phase
        assert r["availability_after_recovery"] == 1.0


def test_mttr_does_not_move_with_the_schedule_phase_given_a_canary() -> None:
    """A technique down for 200 ms after a fault at 0.7 s. Requests every 50 ms read the
    recovery 200-250 ms (+3 ms latency) by their phase; a 200 Hz canary reads it within
    its 5 ms period, whatever the requests' phase: spread <= 5 ms."""
    by_requests, by_canary = [], []
    for phase in (0.0, 0.010, 0.025, 0.040):
        req = stream(0.05, phase, 0.7, 0.2)
        canary = stream(0.005, 0.0, 0.7, 0.2)
        r = resilience(req, [], 0.7, 2.0, canary=canary)
        assert r["mttr_source"] == "canary" and r["mttr_resolution_ms"] == pytest.approx(5)
        assert 203 - 1e-6 <= r["mttr_ms"] <= 208 + 1e-6
        by_canary.append(r["mttr_ms"])
        by_requests.append(r["mttr_requests_ms"])
        # availability still counts the requests, never the canary
        assert r["availability_after_fault"] == pytest.approx(
            (req["scheduled_s"] >= 0.9).sum() / (req["scheduled_s"] >= 0.7).sum())
    assert max(by_canary) - min(by_canary) <= 5
    # the requests alone: the phase term the canary removes (worked out: first request at
    # or after 0.9 s is at 0.9, 0.91, 0.925, 0.94 -> 203, 213, 228, 243 ms)
    assert by_requests == pytest.approx([203, 213, 228, 243])
