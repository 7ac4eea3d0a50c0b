"""The reconfiguration controller in process, against real stage servers on loopback (no root).

A route push that never lands is a failed reconfiguration (`reconfigure.error`,
which makes the run INVALID), not a success.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from harness.bench.stage_procs import free_port, start_stage, stop_stage
from harness.pipeline.client import control_call
from harness.pipeline.node.health import EventSink
from harness.techniques.reconfiguration.node import controller


def plan_for(stage_addr: str, upstream_addr: str) -> dict:
    return {"node": "c1", "period_ms": 20, "timeout_ms": 200, "failures": 1,
            "replace": {"middle": "c1"}, "route_attempts": 3, "route_timeout_s": 0.2,
            "watch": [{"stage": "middle", "addr": stage_addr, "upstream_addr": upstream_addr,
                       "route": {"model": "middle", "targets": [stage_addr],
                                 "inputs": ["x"]}}]}


def run_until_crash(plan: dict, events_file: Path, stage) -> list[dict]:
    """Run the controller; kill the watched stage once it was seen up; its events."""
    t = threading.Thread(target=controller.run, args=(plan, EventSink(str(events_file), "c1")),
                         daemon=True)
    t.start()
    time.sleep(0.3)  # seen up
    stop_stage(stage)
    t.join(timeout=15)
    assert not t.is_alive(), "the controller did not finish"
    return [json.loads(line) for line in events_file.read_text().splitlines()]


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """The harness's side of `ask` (start the stage elsewhere): says it started."""
    calls: list[dict] = []

    def ask(msg: dict) -> dict:
        calls.append(msg)
        return {"ok": True, "addr": "127.0.0.1:1"}

    monkeypatch.setattr(controller, "ask", ask)
    return calls


def test_a_route_that_never_lands_is_an_error(tmp_path: Path, asked: list[dict]) -> None:
    port = free_port()
    stage, _ = start_stage("--null", "x", "--port", str(port), "--host", "127.0.0.1")
    upstream = f"127.0.0.1:{free_port()}"  # nothing listens: every SetRoute fails
    ev = run_until_crash(plan_for(f"127.0.0.1:{port}", upstream), tmp_path / "e.jsonl", stage)
    kinds = [e["kind"] for e in ev]
    assert kinds == ["detect", "reconfigure.error"], ev
    assert asked == [{"op": "start", "stage": "middle", "node": "c1"}]
    assert "UNAVAILABLE" in ev[1]["error"]


def test_a_route_that_lands_is_a_reconfiguration(tmp_path: Path, asked: list[dict]) -> None:
    port, up_port = free_port(), free_port()
    stage, _ = start_stage("--null", "x", "--port", str(port), "--host", "127.0.0.1")
    upstream, _ = start_stage("--null", "x", "--port", str(up_port), "--host", "127.0.0.1")
    try:
        ev = run_until_crash(plan_for(f"127.0.0.1:{port}", f"127.0.0.1:{up_port}"),
                             tmp_path / "e.jsonl", stage)
        # the upstream stage took the new route, to the replacement's address
        route = control_call(f"127.0.0.1:{up_port}", "Stats")["route"]
        assert route["targets"] == ["127.0.0.1:1"] and route["model"] == "middle"
    finally:
        stop_stage(upstream)
    assert [e["kind"] for e in ev] == ["detect", "reconfigure"], ev
