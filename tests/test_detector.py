"""The passive detector: a stage learns that its next stage failed from its own calls.

No root needed: stages are `python -m harness.stage` processes on 127.0.0.1. A hang
is SIGSTOP (the connection stays open and says nothing, as after a silent crash), a
crash with a reset is SIGKILL (the kernel closes the sockets).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from harness.bench.stage_procs import free_lean_port, free_port, start_stage
from harness.pipeline.client import control_call
from harness.pipeline.codec import infer_request
from harness.pipeline.node.health import HealthChecker, Latency
from harness.pipeline.routing import Health, Route
from harness.workload.samples import datasets

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "models" / "digits"
HOST = "127.0.0.1"
PASSIVE = {"period_ms": 25, "timeout_ms": 50, "failures": 1, "detector": "passive",
           "idle_ms": 250, "suspect_min_ms": 25}
# on loopback a healthy call takes ~3 ms; 150 ms keeps a busy machine's spikes from
# making a live target suspect while a hang still shows well inside the test's bounds
LOOPBACK = {**PASSIVE, "suspect_min_ms": 150}


# -- the parts -------------------------------------------------------------------------


def test_latency_is_tracked_as_tcp_tracks_a_round_trip() -> None:
    lat = Latency()
    assert lat.limit(0.025) is None  # nothing answered yet: nothing to judge by
    lat.observe(0.004)
    assert (lat.srtt, lat.rttvar) == (0.004, 0.002)
    assert lat.limit(0.001) == pytest.approx(0.004 + 4 * 0.002)
    lat.observe(0.012)  # RFC 6298: rttvar 3/4 + |srtt - r| / 4, srtt 7/8 + r / 8
    assert lat.rttvar == pytest.approx(0.75 * 0.002 + 0.25 * 0.008)
    assert lat.srtt == pytest.approx(0.875 * 0.004 + 0.125 * 0.012)
    assert lat.limit(0.025) == 0.025  # never below the floor


def _checker(detector: str = "passive") -> tuple[HealthChecker, list[tuple], Health]:
    events: list[tuple] = []
    hc = HealthChecker(lambda _t, _s: True,
                       lambda kind, target, **d: events.append((kind, target, d)))
    hc.set_route(Route(model="m", targets=["a:1", "b:1"], inputs=["x"],
                       health=Health(**{**PASSIVE, "detector": detector})))
    return hc, events, hc.route.health


def test_passive_probes_only_targets_that_are_down_suspect_or_idle() -> None:
    hc, events, h = _checker()
    hc.answered("a:1", 0.003)  # a carries traffic; b (a warm replica) has never answered
    now = hc.latency["a:1"].last_ok
    assert not hc._due("a:1", h, now) and hc._due("b:1", h, now)
    assert hc._due("a:1", h, now + 0.3)  # idle for longer than idle_ms
    hc.silent("b:1")
    assert "b:1" not in hc.suspected  # never seen up: starting, not failing
    hc.silent("a:1", waited_ms=25.0)  # silence: suspect, avoided, probed at once
    assert hc.suspected == {"a:1"} and hc.down == set() and hc._due("a:1", h, now)
    assert hc.order(["a:1", "b:1"]) == ["b:1", "a:1"] and events == []


def test_silence_is_confirmed_or_cleared_by_a_probe() -> None:
    hc, events, h = _checker()
    for t in ("a:1", "b:1"):
        hc.answered(t, 0.003)
    hc.silent("b:1")
    hc._probed("b:1", True, h, hc.epoch.get("b:1", 0))  # a later hop's silence: cleared
    assert hc.suspected == set() and hc.down == set() and events == []
    hc.silent("a:1", waited_ms=25.0)
    stale = hc.epoch.get("a:1", 0)
    time.sleep(0.05)  # the probe's verdict comes 50 ms after the silence
    hc._probed("a:1", False, h, stale)  # confirmed: down, dated from the silence
    assert hc.down == {"a:1"} and events[-1][:2] == ("detect", "a:1")
    assert events[-1][2]["signal"] == "silence" and events[-1][2]["waited_ms"] == 25.0
    # suspected from the silence to the verdict: at least the 50 ms slept, and not much
    # more (a busy machine may oversleep; 500 ms is 10x the sleep)
    assert 50 <= events[-1][2]["suspected_ms"] < 500, events[-1]
    hc._probed("a:1", True, h, stale)  # a probe sent before the down mark: older news
    assert hc.down == {"a:1"}
    hc._probed("a:1", True, h, hc.epoch["a:1"])
    assert hc.down == set() and events[-1] == ("detect.up", "a:1", {"signal": "probe"})
    assert "a:1" not in hc.latency  # a new connection: its latency is learned afresh
    hc.refused("b:1", code="UNAVAILABLE")  # a refusal needs no probe
    assert hc.down == {"b:1"} and events[-1][2]["signal"] == "refused"


def test_the_probe_detector_alone_decides_when_it_is_chosen() -> None:
    hc, events, h = _checker("probe")
    hc._probed("a:1", True, h, 0)
    hc._probed("a:1", False, h, 0)
    assert hc.down == {"a:1"} and events == [("detect", "a:1", {"signal": "probe"})]
    hc.answered("a:1", 0.003)  # a call that went through does not bring it back here
    assert hc.down == {"a:1"} and hc.suspect_after("a:1") is None


def test_a_bad_detector_is_a_one_line_route_error() -> None:
    with pytest.raises(ValueError, match="route.health.detector='gossip'"):
        Route.from_json({"model": "m", "targets": ["a:1"], "inputs": ["x"],
                         "health": {**PASSIVE, "detector": "gossip"}})
    with pytest.raises(ValueError, match="route.health: .*unexpected keyword"):
        Route.from_json({"model": "m", "targets": ["a:1"], "inputs": ["x"],
                         "health": {**PASSIVE, "every": 3}})


# -- a head with two middles on loopback ---------------------------------------------------


class Pair:
    """head -> [middle a, middle b] -> tail, the head watching a and b passively."""

    def __init__(self, tmp: Path, hop: str) -> None:
        self.procs: list[subprocess.Popen] = []
        self.lean = ["--lean"] if hop == "lean" else []
        self.events = tmp / "head.events.jsonl"

    def start(self) -> None:
        tail = self._start("--model", str(DIGITS / "tail.onnx"), "--node", "t")
        route = {"model": "tail", "targets": [tail], "inputs": ["m", "h"]}
        self.a = self._start("--model", str(DIGITS / "middle.onnx"), "--node", "a",
                             "--route", json.dumps(route))
        self.b = self._start("--model", str(DIGITS / "middle.onnx"), "--node", "b",
                             "--route", json.dumps(route))
        self.pid = {self.a: self.procs[-2].pid, self.b: self.procs[-1].pid}
        head_route = {"model": "middle", "targets": [self.a, self.b], "inputs": ["h"],
                      "attempt_timeout_ms": 1000, "health": LOOPBACK}
        self.head = self._start("--model", str(DIGITS / "head.onnx"), "--node", "h",
                                "--route", json.dumps(head_route),
                                "--events", str(self.events))

    def _start(self, *args: str) -> str:
        port = free_lean_port() if self.lean else free_port(HOST)
        proc, _ = start_stage(*args, "--host", HOST, "--port", str(port), *self.lean)
        self.procs.append(proc)
        return f"{HOST}:{port}"

    def close(self) -> None:
        for p in self.procs:
            try:
                os.kill(p.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            p.kill()
        for p in self.procs:
            p.communicate()

    def detections(self) -> list[dict]:
        if not self.events.exists():
            return []
        return [json.loads(line) for line in self.events.read_text().splitlines()]


@pytest.fixture(params=["lean", "grpc"])
def pair(tmp_path, request) -> Iterator[Pair]:
    """On either hop: the signals (a refusal, silence) must read the same."""
    p = Pair(tmp_path, request.param)
    try:
        p.start()  # inside the try: stages already started are killed if a later one fails
        yield p
    finally:
        p.close()


def _send(head: str, n: int, every_s: float, out: list) -> None:
    """n requests to the head, one every `every_s` or when the last one answered, if
    later (closed loop); (sent, seconds, path) of each."""
    x = datasets.digits_frames([3])
    with grpc.insecure_channel(head) as ch:
        stub = pb_grpc.GRPCInferenceServiceStub(ch)
        t0 = time.monotonic()
        for i in range(n):
            time.sleep(max(0.0, t0 + i * every_s - time.monotonic()))
            sent = time.monotonic()
            resp = stub.ModelInfer(infer_request("head", {"image": x}, f"r{i}"), timeout=5)
            out.append((sent, time.monotonic() - sent, resp.parameters["path"].string_param))


@pytest.mark.parametrize("fault", ["hang", "reset"])
def test_a_failed_target_is_found_by_the_calls_not_by_probes(pair: Pair, fault: str) -> None:
    """Traffic flows to a; a hangs (SIGSTOP) or dies (SIGKILL): the head's next call to
    it is the detection ("silence" once it outlasts a's own recent latency, "refused"
    at once), it fails over to b, and no request is lost. Meanwhile a, carrying
    traffic, was never probed, and b, idle, only every idle_ms (probe detector: both
    every 25 ms)."""
    warm: list = []
    t_start = time.monotonic()
    _send(pair.head, 50, 0.02, warm)  # 1 s: a's latency learned, b idle
    assert {p for *_, p in warm} == {"h:head>a:middle>t:tail"}
    live_a = control_call(pair.a, "Stats")["live_calls"]
    live_b = control_call(pair.b, "Stats")["live_calls"]
    # b, idle, is probed every idle_ms (250) since the head started, a only until its
    # first answer; the probe detector would have sent both ~40 a second
    idle_probes = (time.monotonic() - t_start) / 0.25 + 3  # + the head's start-up
    assert live_a <= 4 and live_b <= idle_probes, (live_a, live_b, idle_probes)

    got: list = []
    sender = threading.Thread(target=_send, args=(pair.head, 50, 0.02, got))
    sender.start()
    time.sleep(0.3)
    t_fault = time.monotonic()
    os.kill(pair.pid[pair.a], signal.SIGSTOP if fault == "hang" else signal.SIGKILL)
    sender.join(timeout=30)
    assert len(got) == 50  # every request answered (ModelInfer raises otherwise)

    detect = [e for e in pair.detections() if e["kind"] == "detect"]
    assert [e["target"] for e in detect] == [pair.a], detect
    want = "silence" if fault == "hang" else "refused"
    assert detect[0]["signal"] == want, detect
    after = [(s, p) for s, _, p in got if s > detect[0]["t"]]
    assert after and {p for _, p in after} == {"h:head>b:middle>t:tail"}, got
    # the call that found it waited about its limit (hang) or not at all (reset); the
    # slowest answer is bounded by that, not by the 1 s attempt timeout
    slowest = max(d for s, d, _ in got if s >= t_fault - 0.05)
    assert slowest < 0.5, (slowest, detect)
    if fault == "hang":
        # the silence: the call outlasted a's limit (never below suspect_min_ms); then a
        # probe with its timeout_ms confirmed it (a 50 ms probe; 1 s allows a busy machine)
        assert detect[0]["waited_ms"] >= LOOPBACK["suspect_min_ms"], detect
        assert LOOPBACK["timeout_ms"] - 1 <= detect[0]["suspected_ms"] < 1000, detect
        os.kill(pair.pid[pair.a], signal.SIGCONT)  # back: the down target's probe sees it
        deadline = time.monotonic() + 5
        while not any(e["kind"] == "detect.up" for e in pair.detections()):
            assert time.monotonic() < deadline, pair.detections()
            time.sleep(0.05)
        back: list = []  # a may still be working off what queued while it was stopped
        _send(pair.head, 25, 0.02, back)
        assert back[-1][2] == "h:head>a:middle>t:tail", back
