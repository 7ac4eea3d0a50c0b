"""The headline metrics on small tables whose answers are worked out by hand (no root).

One run of ten requests, s1 sends sample i at 0.1 * i s, SLO 100 ms, answers
accepted until 2.0 s, label of sample i = i % 3; a fault at 0.45 s:

  id sched  record                         status  latency  correct  degraded
  0  0.0    answer 0.05, pred 0            ok      50       yes
  1  0.1    answer 0.25, pred 1            late    150      yes
  2  0.2    answer 0.28, pred 0 (wrong)    ok      80       no
  3  0.3    error                          failed
  4  0.4    answer 2.5 (after 2.0)         lost
  -- fault at 0.45 s ------------------------------------------------------------
  5  0.5    (no record)                    lost
  6  0.6    lost (deadline exceeded)       lost
  7  0.7    answer 0.73, pred 1            ok      30       yes      yes
  8  0.8    answer 0.85, pred 2            ok      50       yes
  9  0.9    answer 1.02, pred 2 (wrong)    late    120      no
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from harness.measure.metrics.outcomes import outcomes, read_records, summarize
from harness.measure.metrics.resilience import breakdown_ms, overheads, resilience
from harness.workload.schedule import Scheduled

SCHEDULE = [Scheduled(i, "s1", i, round(0.1 * i, 9)) for i in range(10)]
LABELS = {i: i % 3 for i in range(10)}


def answer(rid: int, done: float, pred: int, degraded: bool = False) -> dict:
    return {"request_id": rid, "sent_s": 0.1 * rid + 0.0002, "outcome": "answer",
            "completed_s": done, "prediction": pred, "path": "d1:head>c1:tail",
            "degraded": degraded}


RECORDS = {
    0: answer(0, 0.05, 0),
    1: answer(1, 0.25, 1),
    2: answer(2, 0.28, 0),
    3: {"request_id": 3, "sent_s": 0.3002, "outcome": "error", "completed_s": 0.31,
        "error": "UNAVAILABLE: e1"},
    4: answer(4, 2.5, 1),
    6: {"request_id": 6, "sent_s": 0.6002, "outcome": "lost", "completed_s": 2.0,
        "error": "DEADLINE_EXCEEDED"},
    7: answer(7, 0.73, 1, degraded=True),
    8: answer(8, 0.85, 2),
    9: answer(9, 1.02, 2),
}
EVENTS = [  # t_s since run start
    {"t_s": 0.30, "kind": "detect", "target": "e1", "detail": "{}"},  # before the fault
    {"t_s": 0.45, "kind": "fault.crash", "target": "e1", "detail": "{}"},
    {"t_s": 0.50, "kind": "detect", "target": "e1", "detail": "{}"},
    {"t_s": 0.60, "kind": "detect", "target": "e2", "detail": "{}"},
    {"t_s": 0.70, "kind": "detect.up", "target": "e1", "detail": "{}"},
]


@pytest.fixture(scope="module")
def df():
    return outcomes(SCHEDULE, RECORDS, LABELS, slo_ms=100.0, answer_by_s=2.0)


def test_each_request_gets_one_status(df) -> None:
    assert list(df["status"]) == ["ok", "late", "ok", "failed", "lost",
                                  "lost", "lost", "ok", "ok", "late"]
    lat = df["latency_ms"].tolist()
    # latency counts from the scheduled time, not the send time
    assert lat[0] == pytest.approx(50) and lat[1] == pytest.approx(150)
    assert lat[9] == pytest.approx(120)
    assert all(v != v for v in lat[3:7])  # no answer (in time): no latency (NaN)
    assert df["correct"].tolist()[:3] == [True, True, False]
    assert pd.isna(df.loc[4, "prediction"])  # an answer after the deadline is lost
    assert bool(df.loc[7, "degraded"]) and not bool(df.loc[8, "degraded"])


def test_summary(df) -> None:
    s = summarize(df)
    assert (s["n_scheduled"], s["n_ok"], s["n_late"], s["n_failed"], s["n_lost"]) == \
        (10, 4, 2, 1, 3)
    assert s["n_answered"] == 6
    assert s["availability"] == pytest.approx(0.4)
    assert s["accuracy"] == pytest.approx(4 / 6)  # 0, 1, 7, 8 of 0, 1, 2, 7, 8, 9
    # answered latencies 50, 150, 80, 30, 50, 120: median (50 + 80) / 2
    assert s["latency_ms"]["p50"] == pytest.approx(65)
    assert s["latency_ms"]["max"] == pytest.approx(150)
    assert s["lateness_ms"]["p50"] == pytest.approx(0.2)


def test_resilience_after_the_fault(df) -> None:
    r = resilience(df, EVENTS, fault_at_s=0.45, end_s=1.0)
    assert r["fault_at_s"] == 0.45
    assert r["mttd_ms"] == pytest.approx(50)  # first detect at or after 0.45 s: 0.50
    assert r["mttr_ms"] == pytest.approx(280)  # request 7, completed at 0.73
    # requests 5-9 after the fault, 2 ok: (1 - 2/5) x (1.0 - 0.45) s
    assert r["unavailable_ms"] == pytest.approx(330)
    assert r["availability_after_fault"] == pytest.approx(0.4)
    assert r["accuracy_after_fault"] == pytest.approx(2 / 3)  # 7, 8 right; 9 wrong
    assert r["degraded_after_fault"] == pytest.approx(1 / 3)  # 7 of 7, 8, 9
    # recovered from 0.45 + 0.28 = 0.73 s: requests 8 (ok) and 9 (late)
    assert r["availability_after_recovery"] == pytest.approx(0.5)


def test_resilience_without_a_fault_or_a_detection(df) -> None:
    r = resilience(df, EVENTS, fault_at_s=None, end_s=1.0)
    assert r["fault_at_s"] is None and r["mttr_ms"] is None and r["mttd_ms"] is None
    r = resilience(df, [e for e in EVENTS if e["kind"] != "detect"], 0.45, 1.0)
    assert r["mttd_ms"] is None and r["mttr_ms"] == pytest.approx(280)


def test_no_recovery_when_nothing_after_the_fault_is_ok(df) -> None:
    down = df.copy()
    down.loc[down["scheduled_s"] >= 0.45, "status"] = "lost"
    r = resilience(down, EVENTS, 0.45, 1.0)
    assert r["mttr_ms"] is None and r["availability_after_recovery"] is None
    assert r["availability_after_fault"] == 0.0
    assert r["unavailable_ms"] == pytest.approx(550)


def test_recovery_breakdown() -> None:
    phases = {"t_detect": 100.5, "detect_to_spawn_ms": 2.0, "process_start_ms": 100.0,
              "model_load_ms": 30.0, "first_inference_ms": 5.0, "ready_ms": 1.0}
    b = breakdown_ms(phases, t0=100.0, fault_at=0.45, mttr_ms=280.0)
    assert b["detection_ms"] == pytest.approx(50)  # 100.5 - (100.0 + 0.45)
    assert b["reroute_ms"] == pytest.approx(280 - 188)  # what the phases leave of MTTR
    assert "t_detect" not in b
    assert "reroute_ms" not in breakdown_ms(phases, 100.0, 0.45, None)
    assert breakdown_ms(None, 100.0, 0.45, 280.0) is None
    assert breakdown_ms(phases, 100.0, None, 280.0) is None


def test_overheads() -> None:
    before = ({"d1": 1.0, "e1": 2.0},
              {"l1": {"fwd": {"fwd_bytes": 100}, "rev": {"fwd_bytes": 50}}})
    after = ({"d1": 1.5, "e1": 3.0, "e2": 0.25},
             {"l1": {"fwd": {"fwd_bytes": 400}, "rev": {"fwd_bytes": 80}},
              "l2": {"fwd": {"fwd_bytes": 10}}})
    o = overheads(before, after, n_instances=4, n_stages=3)
    assert o["cpu_s"] == pytest.approx(1.75)
    assert o["cpu_s_by_node"] == pytest.approx({"d1": 0.5, "e1": 1.0, "e2": 0.25})
    assert o["bytes_sent"] == 340  # 300 + 30 + 10 (a link that appeared counts from 0)
    assert o["replicas"] == 1
    assert overheads(({}, {}), ({"d1": 1.0}, {}), 3, 3)["bytes_sent"] is None  # netem


def test_read_records_keeps_the_best_and_skips_a_torn_line(tmp_path: Path) -> None:
    a, b = tmp_path / "s1.jsonl", tmp_path / "s2.jsonl"
    a.write_text("\n".join(json.dumps(r) for r in [
        {"request_id": 1, "outcome": "error", "completed_s": 0.2},
        {"request_id": 4, "outcome": "answer", "completed_s": 0.40, "prediction": 1},
    ]) + '\n{"request_id": 2, "outc')  # the sensor died mid-line
    b.write_text("\n".join(json.dumps(r) for r in [
        {"request_id": 1, "outcome": "answer", "completed_s": 0.3, "prediction": 0},
        {"request_id": 4, "outcome": "answer", "completed_s": 0.35, "prediction": 2},
        {"request_id": 5, "outcome": "lost", "completed_s": 2.0},
    ]) + "\n")
    got = read_records([a, b, tmp_path / "missing.jsonl"])
    assert set(got) == {1, 4, 5}
    assert got[1]["outcome"] == "answer"  # an answer beats an error
    assert got[4]["completed_s"] == 0.35  # the earliest answer wins
    assert got[5]["outcome"] == "lost"


def test_accounting_identity_whatever_the_records(df) -> None:
    # every scheduled request exactly once, one status each; a record for an id that was
    # never scheduled (99) is ignored, a request no sensor recorded (5) is lost
    stray = {**RECORDS, 99: answer(99, 0.5, 0)}
    d = outcomes(SCHEDULE, stray, LABELS, slo_ms=100.0, answer_by_s=2.0)
    assert list(d["request_id"]) == list(range(10))
    assert d["status"].isin(["ok", "late", "failed", "lost"]).all()
    s = summarize(d)
    assert s["n_ok"] + s["n_late"] + s["n_failed"] + s["n_lost"] == s["n_scheduled"] == 10
    assert d.loc[5, "status"] == "lost" and pd.isna(d.loc[5, "sent_s"])  # never sent
    pd.testing.assert_frame_equal(d, df)


def test_latency_from_the_scheduled_time_and_the_boundaries() -> None:
    # binary-exact times so the boundaries are exact; SLO 125 ms, answers awaited to 2.0 s
    sched = [Scheduled(0, "s1", 0, 1.0), Scheduled(1, "s1", 1, 0.5),
             Scheduled(2, "s1", 2, 1.75), Scheduled(3, "s1", 0, 1.5)]
    recs = {
        # a stalled load generator sent it 62.5 ms late; answered 62.5 ms after sending:
        # 125 ms from the scheduled time + 62.5 = 187.5 ms -> late (from the send: ok)
        0: {"request_id": 0, "sent_s": 1.0625, "outcome": "answer", "completed_s": 1.1875,
            "prediction": 0},
        # exactly at the SLO: ok
        1: {"request_id": 1, "sent_s": 0.5, "outcome": "answer", "completed_s": 0.625,
            "prediction": 1},
        # exactly at the end of the wait: still answered (late, 250 ms)
        2: {"request_id": 2, "sent_s": 1.75, "outcome": "answer", "completed_s": 2.0,
            "prediction": 0},
        # an error keeps no prediction, path or latency
        3: {"request_id": 3, "sent_s": 1.5, "outcome": "error", "completed_s": 1.5625,
            "prediction": 0, "path": "d1:head", "error": "INVALID_ARGUMENT: x"},
    }
    d = outcomes(sched, recs, {0: 0, 1: 1, 2: 2}, slo_ms=125.0, answer_by_s=2.0)
    assert list(d["status"]) == ["late", "ok", "late", "failed"]
    assert d["latency_ms"].tolist()[:3] == [187.5, 125.0, 250.0]
    assert pd.isna(d.loc[3, "latency_ms"]) and pd.isna(d.loc[3, "prediction"])
    assert pd.isna(d.loc[3, "correct"]) and d.loc[3, "path"] is None
    assert d.loc[3, "error"] == "INVALID_ARGUMENT: x"
    assert d["correct"].tolist()[:3] == [True, True, False]  # sample 2's label is 2
    s = summarize(d)
    assert s["lateness_ms"]["max"] == 62.5 and s["lateness_ms"]["p50"] == 0.0
    assert s["latency_ms"]["p50"] == 187.5 and s["accuracy"] == pytest.approx(2 / 3)


def test_a_detection_at_the_fault_instant_counts(df) -> None:
    r = resilience(df, [{"t_s": 0.45, "kind": "detect", "target": "e1", "detail": "{}"}],
                   0.45, 1.0)
    assert r["mttd_ms"] == 0.0
    # `detect.up` or a fault event is no detection
    r = resilience(df, [e for e in EVENTS if e["kind"] != "detect"], 0.45, 1.0)
    assert r["mttd_ms"] is None


def test_redundant_sensing_the_best_record_of_each_request(tmp_path: Path) -> None:
    """Both cameras send every observation (sensor `s1+s2`); per request the best of the
    two records counts: an answer over an error over a loss, then the earliest."""
    a, b = tmp_path / "s1.jsonl", tmp_path / "s2.jsonl"
    a.write_text("\n".join(json.dumps(r) for r in [
        {"request_id": 0, "outcome": "answer", "completed_s": 0.09, "prediction": 3},
        {"request_id": 1, "outcome": "lost", "completed_s": 2.0, "error": "DEADLINE"},
        {"request_id": 2, "outcome": "lost", "completed_s": 2.0, "error": "DEADLINE"},
    ]) + "\n")
    b.write_text("\n".join(json.dumps(r) for r in [
        {"request_id": 0, "outcome": "answer", "completed_s": 0.05, "prediction": 4},
        {"request_id": 1, "outcome": "error", "completed_s": 0.375, "error": "UNAVAILABLE"},
        {"request_id": 2, "outcome": "answer", "completed_s": 0.5625, "prediction": 5},
    ]) + "\n")
    recs = read_records([a, b])
    sched = [Scheduled(i, "s1+s2", i, 0.25 * i) for i in range(3)]
    d = outcomes(sched, recs, {0: 4, 1: 1, 2: 5}, slo_ms=100.0, answer_by_s=2.0)
    # 0: s2's answer at 0.05 s (50 ms, ok, prediction 4 = label); 1: s2's error beats
    # s1's loss -> failed; 2: s2's answer beats s1's loss: 0.5625 - 0.5 s = 62.5 ms -> ok
    assert list(d["status"]) == ["ok", "failed", "ok"]
    assert d.loc[0, "prediction"] == 4 and bool(d.loc[0, "correct"])
    assert d.loc[1, "error"] == "UNAVAILABLE"
    assert d.loc[2, "latency_ms"] == 62.5


def test_the_fault_counts_from_when_it_took_effect() -> None:
    import json

    from harness.run.inference import fault_in_effect

    rows = [{"t_s": -0.5, "kind": "stage.ready", "target": "e1", "detail": "{}"},
            {"t_s": 2.03, "kind": "fault.crash", "target": "e1",
             "detail": json.dumps({"scheduled_s": 2.0, "apply_ms": 40.0})},
            {"t_s": 4.0, "kind": "fault.restore", "target": "e1",
             "detail": json.dumps({"scheduled_s": 4.0, "apply_ms": 5.0})}]
    assert fault_in_effect(rows, 2.0) == 2.07  # started 30 ms late, took 40 ms
    assert fault_in_effect(rows, 2.0, start=True) == 2.03  # its action began
    assert fault_in_effect(rows[:1], 2.0) == 2.0  # no event: the plan
    assert fault_in_effect(rows, None) is None


def test_a_detection_while_the_fault_is_applied_counts(df) -> None:
    """stage_kill: the kill starts at 0.45 s and is in effect at 0.465 s (kill_all waits
    >= 10 ms for the processes to go); the upstream stage's call is refused at 0.451 s.
    Counted from the in-effect instant, that detection was ignored and the one at 0.50 s
    taken (or none); the fault counts from its start (`fault_at_s`), so MTTD is 1 ms."""
    events = [*EVENTS, {"t_s": 0.451, "kind": "detect", "target": "e1", "detail": "{}"}]
    assert resilience(df, events, fault_at_s=0.45, end_s=1.0)["mttd_ms"] == pytest.approx(1)
