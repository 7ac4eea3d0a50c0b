"""trace.json: a run as Chrome trace events (Perfetto), every request and event in it."""

from __future__ import annotations

import json

import pytest

from tests.helpers import entry, root_only, shared_run


@pytest.mark.needs_root
@root_only
def test_trace_of_a_failover_run_with_a_crash() -> None:
    # the warm failover run the techniques' tests read (tests.helpers.shared_run)
    s, df, ev, run_dir = shared_run("technique=failover", "faults=edge_crash", "run.duration_s=6")
    p = entry("harness.trace", str(run_dir))
    assert p.returncode == 0, p.stderr
    trace = json.loads((run_dir / "trace.json").read_text())
    events = trace["traceEvents"]
    assert all({"ph", "pid"} <= set(e) for e in events)
    assert all(e["ts"] >= 0 for e in events if "ts" in e)
    begins = [e for e in events if e["ph"] == "b"]
    ends = [e for e in events if e["ph"] == "e"]
    answered = df[df["completed_s"].notna()]
    # one async slice per answered request, its id the request's, closed after it opened
    assert sorted(e["id"] for e in begins) == sorted(answered["request_id"])
    assert sorted(e["id"] for e in ends) == sorted(answered["request_id"])
    by_id = {e["id"]: e["ts"] for e in begins}
    assert all(e["ts"] >= by_id[e["id"]] for e in ends)
    unanswered = [e for e in events if e["ph"] == "i" and e["cat"] == "request"]
    assert len(unanswered) == len(df) - len(answered)
    instants = {e["name"] for e in events if e["ph"] == "i"}
    assert "fault.crash e1" in instants
    assert any(n.startswith("detect ") for n in instants)  # failover saw it
    assert len([e for e in events if e["ph"] == "i" and e["cat"] != "request"]) == len(ev)
    names = {e["args"]["name"] for e in events if e["ph"] == "M"
             and e["name"] == "process_name"}
    assert {"node s1", "node d1", "node e1", "node c1"} <= names
    counters = [e for e in events if e["ph"] == "C"]
    if s["shaper"] == "userspace":  # the delay line counts bytes: throughput counters
        assert any(e["name"].startswith("link d1-e1") and e["args"]["Mbit/s"] > 0
                   for e in counters)


def test_trace_of_something_that_is_not_a_run_exits_2(tmp_path) -> None:
    p = entry("harness.trace", str(tmp_path))
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        f"trace error: RUN_DIR={str(tmp_path)!r}: not a run directory (needs summary.json "
        "and events.parquet)"]
