"""The hedge policy on real stages (no root: `python -m harness.stage` on 127.0.0.1).

A hedge is sent after `hedge_ms` while the primary is still out, and at once when the
primary has already failed: waiting out the timer then only delays the answer.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from harness.bench.stage_procs import free_port, start_stage
from harness.pipeline.client import control_call
from harness.pipeline.codec import infer_request
from harness.workload.samples import datasets

DIGITS = Path(__file__).resolve().parent.parent / "models" / "digits"
HOST = "127.0.0.1"
HEDGE_MS = 200


@pytest.fixture(scope="module")
def stages() -> Iterator[dict[str, str]]:
    """head -> middle; the head's route is set per test."""
    procs: list[subprocess.Popen] = []

    def start(*args: str) -> str:
        port = free_port(HOST)
        proc, _ = start_stage(*args, "--host", HOST, "--port", str(port))
        procs.append(proc)
        return f"{HOST}:{port}"

    try:
        middle = start("--model", str(DIGITS / "middle.onnx"), "--node", "b")
        head = start("--model", str(DIGITS / "head.onnx"), "--node", "a")
        yield {"head": head, "middle": middle}
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.communicate()


def _hedged(stages: dict[str, str], primary: str) -> None:
    route = {"model": "middle", "targets": [primary, stages["middle"]], "inputs": ["h"],
             "policy": "hedge", "hedge_ms": HEDGE_MS}
    assert control_call(stages["head"], "SetRoute", {"route": route}) == {"ok": True}


def _times_ms(head: str, n: int) -> list[float]:
    """n calls to the head one after the other: each one's seconds to the answer, in ms;
    every answer came through the middle stage."""
    x = datasets.digits_frames([3])
    out = []
    with grpc.insecure_channel(head) as ch:
        stub = pb_grpc.GRPCInferenceServiceStub(ch)
        for i in range(n):
            t = time.monotonic()
            resp = stub.ModelInfer(infer_request("head", {"image": x}, f"r{i}"), timeout=5)
            out.append((time.monotonic() - t) * 1000)
            assert resp.parameters["path"].string_param == "a:head>b:middle"
    return out


def test_a_refused_primary_is_hedged_at_once(stages) -> None:
    """The primary's port is closed (refused at once): the hedge goes out then, not
    hedge_ms later. A call takes a few ms here (tens on a busy machine): the median of 9
    stays far below 100 ms, where waiting out the timer puts every call above 200."""
    _hedged(stages, f"{HOST}:{free_port(HOST)}")
    _times_ms(stages["head"], 2)  # warm: connections, the first inferences
    times = _times_ms(stages["head"], 9)
    assert statistics.median(times) < 100, times


def test_a_silent_primary_is_hedged_after_hedge_ms(stages) -> None:
    """The primary accepts the connection and never answers: the hedge still waits its
    hedge_ms (the timer is not skipped), and then answers."""
    with socket.socket() as hole:
        hole.bind((HOST, 0))
        hole.listen()
        _hedged(stages, f"{HOST}:{hole.getsockname()[1]}")
        times = _times_ms(stages["head"], 3)
    assert min(times) >= HEDGE_MS - 1 and statistics.median(times) < HEDGE_MS + 300, times
