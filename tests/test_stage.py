"""Pipeline stages (`harness.stage`) as KServe v2 gRPC servers: serving, chains, routes.

No root needed: every stage is a `python -m harness.stage` process on 127.0.0.1,
on a port picked by binding to port 0, started with Popen (waiting for its
`{"serving": ...}` line) by fixtures that always kill it.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tc
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException

from harness.bench.stage_procs import free_port, start_stage
from harness.pipeline.client import control_call
from harness.pipeline.codec import decode_outputs, infer_request
from harness.pipeline.sessions import load_session
from harness.workload.samples import datasets

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "models" / "digits"
HOST = "127.0.0.1"
CHAIN_PATH = "nodeA:head>nodeB:middle>nodeC:tail"



class Stages:
    """Stage processes on 127.0.0.1, each on a free port; `kill_all` always runs."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen] = {}

    def __call__(self, *args: str) -> str:
        """Start `python -m harness.stage ARGS` on a free port; its host:port."""
        port = free_port(HOST)
        proc, info = start_stage(*args, "--host", HOST, "--port", str(port))
        target = f"{HOST}:{port}"
        self.procs[target] = proc
        assert info["port"] == port
        return target

    def kill(self, target: str) -> None:
        proc = self.procs[target]
        proc.kill()
        proc.communicate()

    def kill_all(self) -> None:
        for proc in self.procs.values():
            proc.kill()
        for proc in self.procs.values():
            proc.communicate()


def _stages() -> Iterator[Stages]:
    stages = Stages()
    try:
        yield stages
    finally:
        stages.kill_all()


@pytest.fixture
def stage() -> Iterator[Stages]:
    """Stages for one test; all killed after it."""
    yield from _stages()


@pytest.fixture(scope="module")
def module_stages() -> Iterator[Stages]:
    """Stages shared by a module's tests; all killed after them."""
    yield from _stages()


@pytest.fixture(scope="module")
def full(module_stages) -> str:
    return module_stages("--model", str(DIGITS / "full.onnx"), "--node", "n0")


@pytest.fixture(scope="module")
def chain(module_stages) -> dict[str, str]:
    """head (nodeA) -> middle (nodeB) -> tail (nodeC); tests that re-route restore it."""
    tail = module_stages("--model", str(DIGITS / "tail.onnx"), "--node", "nodeC")
    middle = module_stages("--model", str(DIGITS / "middle.onnx"), "--node", "nodeB",
                           "--route", json.dumps(_route("tail", [tail], ["m", "h"])))
    head = module_stages("--model", str(DIGITS / "head.onnx"), "--node", "nodeA",
                         "--route", json.dumps(_route("middle", [middle], ["h"])))
    return {"head": head, "middle": middle, "tail": tail}


def _route(model: str, targets: list[str], inputs: list[str]) -> dict:
    return {"model": model, "targets": targets, "inputs": inputs}


@pytest.fixture
def head_route(chain) -> Iterator[Callable[[dict | None], None]]:
    """Set the chain's head route at run time; put back head -> middle afterwards."""
    def set_route(route: dict | None) -> None:
        assert control_call(chain["head"], "SetRoute", {"route": route}) == {"ok": True}
    try:
        yield set_route
    finally:
        set_route(_route("middle", [chain["middle"]], ["h"]))


def client(target: str) -> tc.InferenceServerClient:
    return tc.InferenceServerClient(url=target)


def infer(target: str, model: str, tensors: dict[str, np.ndarray],
          timeout: float = 10.0) -> tuple[dict[str, np.ndarray], str]:
    """One ModelInfer over the raw stub: (outputs, path)."""
    with grpc.insecure_channel(target) as ch:
        resp = pb_grpc.GRPCInferenceServiceStub(ch).ModelInfer(
            infer_request(model, tensors), timeout=timeout)
    return decode_outputs(resp), resp.parameters["path"].string_param


def frames(ids) -> np.ndarray:
    return datasets.digits_frames([int(i) for i in ids])


def in_process_chain(x: np.ndarray) -> np.ndarray:
    head, middle, tail = (load_session(DIGITS / f"{n}.onnx") for n in ("head", "middle", "tail"))
    (h,) = head.run(["h"], {"image": x})
    (m,) = middle.run(["m"], {"h": h})
    return tail.run(["logits"], {"m": m, "h": h})[0]


# -- one stage: KServe v2 with tritonclient -------------------------------------------------


def test_health_and_metadata(full):
    c = client(full)
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("full") is True
    assert c.is_model_ready("nope") is False
    md = c.get_model_metadata("full")
    assert [(i.name, i.datatype, list(i.shape)) for i in md.inputs] == \
        [("image", "FP32", [-1, 1, 32, 32])]
    assert [o.name for o in md.outputs] == ["logits"]
    assert md.outputs[0].datatype == "FP32"
    with pytest.raises(InferenceServerException) as e:
        c.get_model_metadata("nope")
    assert e.value.status() == "StatusCode.NOT_FOUND"


def test_infer_matches_onnxruntime(full):
    x = frames(datasets.digits_split()[1][:4])
    inp = tc.InferInput("image", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    res = client(full).infer("full", [inp], outputs=[tc.InferRequestedOutput("logits")])
    got = res.as_numpy("logits")
    want = load_session(DIGITS / "full.onnx").run(["logits"], {"image": x})[0]
    assert got.shape == want.shape == (4, 10)
    assert np.max(np.abs(got - want)) <= 1e-5
    assert res.get_response().parameters["path"].string_param == "n0:full"


def test_unknown_model_is_not_found(full):
    x = frames([0])
    inp = tc.InferInput("image", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as e:
        client(full).infer("nope", [inp])
    assert e.value.status() == "StatusCode.NOT_FOUND"
    assert "nope" in e.value.message()


def test_name_defaults_to_stem_and_can_be_set(stage):
    other = stage("--model", str(DIGITS / "full.onnx"), "--name", "other")
    c = client(other)
    assert c.is_model_ready("other") and not c.is_model_ready("full")
    logits, path = infer(other, "other", {"image": frames([0])})
    assert logits["logits"].shape == (1, 10) and path.endswith(":other")


def test_null_stage_returns_its_input(stage):
    null = stage("--null", "x", "--node", "n9")
    x = np.random.default_rng(0).random((1, 16384), dtype=np.float32)
    out, path = infer(null, "null", {"x": x})
    assert list(out) == ["x"] and out["x"].dtype == np.float32
    np.testing.assert_array_equal(out["x"], x)
    assert path == "n9:null"


# -- a chain: head -> middle -> tail --------------------------------------------------------


def test_chain_equals_full_model(chain):
    x = frames(datasets.digits_split()[1][:3])
    inp = tc.InferInput("image", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    res = client(chain["head"]).infer("head", [inp])  # no deadline: each hop waits as long
    want = load_session(DIGITS / "full.onnx").run(["logits"], {"image": x})[0]
    assert np.max(np.abs(res.as_numpy("logits") - want)) <= 1e-4
    assert res.get_response().parameters["path"].string_param == CHAIN_PATH


def test_chain_accuracy_equals_in_process_chain(chain):
    ids = datasets.digits_split()[1][::7][:50]
    labels = datasets.digits_labels(ids)
    with grpc.insecure_channel(chain["head"]) as ch:
        stub = pb_grpc.GRPCInferenceServiceStub(ch)
        remote = np.concatenate([
            decode_outputs(stub.ModelInfer(infer_request("head", {"image": frames([i])}),
                                           timeout=10))["logits"] for i in ids])
    local = in_process_chain(frames(ids))
    assert len(ids) == 50
    np.testing.assert_array_equal(remote.argmax(1), local.argmax(1))
    acc_remote, acc_local = np.mean(remote.argmax(1) == labels), np.mean(local.argmax(1) == labels)
    assert acc_remote == acc_local and acc_local > 0.5


def test_reroute_at_run_time_and_stats(chain, stage, head_route):
    exit1 = stage("--model", str(DIGITS / "exit1.onnx"), "--node", "nodeD")
    x = frames([5])
    before = control_call(chain["head"], "Stats")
    assert before["ok"] and (before["name"], before["node"]) == ("head", "nodeA")
    assert before["providers"] == ["CPUExecutionProvider"]

    head_route(_route("exit1", [exit1], ["h"]))  # early exit: head -> exit1
    out, path = infer(chain["head"], "head", {"image": x})
    assert path == "nodeA:head>nodeD:exit1"
    s_head, s_exit = (load_session(DIGITS / f"{n}.onnx") for n in ("head", "exit1"))
    want = s_exit.run(["logits"], {"h": s_head.run(["h"], {"image": x})[0]})[0]
    assert np.max(np.abs(out["logits"] - want)) <= 1e-5

    dead = f"{HOST}:{free_port(HOST)}"  # targets are tried in order: failover to middle
    head_route(_route("middle", [dead, chain["middle"]], ["h"]))
    assert infer(chain["head"], "head", {"image": x})[1] == CHAIN_PATH

    head_route(None)  # no route: head is the last stage and answers h
    out, path = infer(chain["head"], "head", {"image": x})
    assert path == "nodeA:head" and out["h"].shape == (1, 16, 16, 16)

    after = control_call(chain["head"], "Stats")
    assert after["requests"] - before["requests"] == 3
    assert after["forwarded"] - before["forwarded"] == 2
    assert after["errors"] == before["errors"]
    assert control_call(exit1, "Stats")["requests"] == 1
    with pytest.raises(grpc.RpcError) as e:
        control_call(chain["head"], "Nope")
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


# -- errors ----------------------------------------------------------------------------


def test_next_stage_down_is_unavailable_naming_the_hop(stage):
    middle = stage("--model", str(DIGITS / "middle.onnx"), "--node", "nodeB")
    head = stage("--model", str(DIGITS / "head.onnx"), "--node", "nodeA",
                 "--route", json.dumps(_route("middle", [middle], ["h"])))
    x = frames([0])
    assert infer(head, "head", {"image": x})[1] == "nodeA:head>nodeB:middle"
    stats = control_call(head, "Stats")
    stage.kill(middle)
    with pytest.raises(grpc.RpcError) as e:
        infer(head, "head", {"image": x}, timeout=2.0)
    assert e.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert "nodeA:head -> middle" in e.value.details()
    assert control_call(head, "Stats")["errors"] == stats["errors"] + 1


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A TCP port that accepts connections and never answers (a hung next stage)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        s.listen()
        yield f"{HOST}:{s.getsockname()[1]}"


def test_hung_next_stage_is_deadline_exceeded(chain, head_route, black_hole):
    head_route(_route("middle", [black_hole], ["h"]))
    with pytest.raises(grpc.RpcError) as e:
        infer(chain["head"], "head", {"image": frames([0])}, timeout=0.5)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_hung_next_stage_error_names_the_hop(chain, head_route, black_hole):
    head_route(_route("middle", [black_hole], ["h"]))
    with pytest.raises(grpc.RpcError) as e:
        infer(chain["head"], "head", {"image": frames([0])}, timeout=0.5)
    assert "nodeA:head -> middle" in (e.value.details() or "")
