"""The lean hop between stages (harness.pipeline.node.lean), on loopback: the same answers
as gRPC, and failures that read as gRPC's (the techniques and detectors key on them)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tc

from harness.bench.stage_procs import free_lean_port, start_stage, stop_stage
from harness.pipeline.codec import decode_outputs, infer_request
from harness.pipeline.node import lean
from harness.pipeline.node.calls import DOWNSTREAM
from harness.workload.samples import datasets

DIGITS = Path(__file__).resolve().parent.parent / "models" / "digits"
HOST = "127.0.0.1"


class Stages:
    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, *args: str, port: int | None = None) -> str:
        port = port or free_lean_port()
        proc, _ = start_stage(*args, "--host", HOST, "--port", str(port), "--lean")
        self.procs[f"{HOST}:{port}"] = proc
        return f"{HOST}:{port}"

    def stop(self, target: str) -> None:
        stop_stage(self.procs.pop(target))


@pytest.fixture
def stages() -> Iterator[Stages]:
    s = Stages()
    try:
        yield s
    finally:
        for p in s.procs.values():
            os.kill(p.pid, signal.SIGCONT)
            stop_stage(p)


def _cut() -> dict[str, np.ndarray]:
    """h and m of one digit, as the head and middle partitions make them."""
    from harness.pipeline.sessions import load_session

    (h,) = load_session(DIGITS / "head.onnx").run(["h"], {"image": datasets.digits_frames([0])})
    (m,) = load_session(DIGITS / "middle.onnx").run(["m"], {"h": h})
    return {"h": h, "m": m}


def _chain(stages: Stages) -> str:
    tail = stages.start("--model", str(DIGITS / "tail.onnx"), "--node", "c")
    middle = stages.start("--model", str(DIGITS / "middle.onnx"), "--node", "b", "--route",
                          json.dumps({"model": "tail", "targets": [tail], "inputs": ["m", "h"]}))
    return stages.start("--model", str(DIGITS / "head.onnx"), "--node", "a", "--route",
                        json.dumps({"model": "middle", "targets": [middle], "inputs": ["h"]}))


def test_a_lean_chain_answers_as_grpc_and_tritonclient_still_talks_to_every_stage(stages):
    head = _chain(stages)
    x = datasets.digits_frames([0, 1, 2])
    with grpc.insecure_channel(head) as ch:
        from tritonclient.grpc import service_pb2_grpc as pb_grpc

        resp = pb_grpc.GRPCInferenceServiceStub(ch).ModelInfer(
            infer_request("head", {"image": x}), timeout=10)
    assert resp.parameters["path"].string_param == "a:head>b:middle>c:tail"
    # the head's answer over its lean port is the same message
    via_lean = lean.Channel(head).ModelInfer(infer_request("head", {"image": x}), timeout=10)
    np.testing.assert_array_equal(decode_outputs(via_lean)["logits"],
                                  decode_outputs(resp)["logits"])
    for target in stages.procs:  # every stage still serves KServe v2 gRPC to outside clients
        c = tc.InferenceServerClient(url=target)
        assert c.is_server_live() and c.is_server_ready()


def test_errors_read_as_grpc_errors(stages):
    head = _chain(stages)
    ch = lean.Channel(head)
    with pytest.raises(grpc.RpcError) as e:
        ch.ModelInfer(infer_request("nosuch", {"image": datasets.digits_frames([0])}), 5)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and "nosuch" in e.value.details()
    # nobody listening: UNAVAILABLE, as gRPC says for a refused connection
    with pytest.raises(grpc.RpcError) as e:
        lean.Channel(f"{HOST}:{free_lean_port()}").ModelInfer(
            infer_request("head", {"image": datasets.digits_frames([0])}), 5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_later_hop_down_is_marked_downstream_and_a_hang_is_a_deadline(stages):
    tail = stages.start("--model", str(DIGITS / "tail.onnx"), "--node", "c")
    middle = stages.start("--model", str(DIGITS / "middle.onnx"), "--node", "b", "--route",
                          json.dumps({"model": "tail", "targets": [tail], "inputs": ["m", "h"]}))
    msg = infer_request("middle", {"h": _cut()["h"]})
    ch = lean.Channel(middle)
    assert ch.ModelInfer(msg, timeout=10).parameters["path"].string_param == "b:middle>c:tail"
    stages.stop(tail)
    with pytest.raises(grpc.RpcError) as e:
        ch.ModelInfer(msg, timeout=10)
    # middle is alive and says the failure is a later hop's: not to be blamed on it
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert (DOWNSTREAM, "b:middle") in e.value.trailing_metadata()
    os.kill(stages.procs[middle].pid, signal.SIGSTOP)  # a hang: silence, no reset
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        ch.ModelInfer(msg, timeout=0.3)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.25 <= time.monotonic() - t0 < 3


def test_a_kept_connection_to_a_restarted_stage_is_replaced(stages):
    tail = stages.start("--model", str(DIGITS / "tail.onnx"), "--node", "c")
    port = int(tail.rpartition(":")[2])
    msg = infer_request("tail", _cut())
    ch = lean.Channel(tail)
    ch.ModelInfer(msg, timeout=10)
    stages.stop(tail)
    stages.start("--model", str(DIGITS / "tail.onnx"), "--node", "c", port=port)
    assert ch.ModelInfer(msg, timeout=10).model_name == "tail"  # no error for the old one
