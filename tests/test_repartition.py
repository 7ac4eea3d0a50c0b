"""Re-partitioning (technique=reconfiguration, mode=repartition) without the network: the
moves planned for a lost stage, their cuts and memory, the controller's choice, and a
stage loading a merged partition in place."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from harness.bench.stage_procs import free_port, start_stage, stop_stage
from harness.core.config import ConfigError
from harness.pipeline.client import control_call
from harness.pipeline.codec import decode_outputs, infer_request
from harness.pipeline.deployment import Deployment
from harness.run.experiment import compose_experiment
from harness.techniques.reconfiguration.node.controller import ranked
from tests.helpers import REPO

REPART = ["topology=device_edge_cloud", "workload=digits", "technique=reconfiguration",
          "technique.mode=repartition"]
SMALL = "topology.nodes={d1:{mem_mb:150},e2:{mem_mb:64},c1:{mem_mb:200}}"


def _moves(tmp_path: Path, *overrides: str) -> list[dict]:
    exp = compose_experiment(*REPART, *overrides)
    dep = Deployment(None, exp.pipeline, tmp_path, lambda *a, **k: None)
    files = dep.prepare()
    exp.technique.parts_dir = dep.parts_dir  # merged cuts go beside the run's partitions
    ips = {n.name: f"10.0.0.{i + 1}" for i, n in enumerate(exp.topology.nodes)}
    exp.technique.instances(exp.plan, files, ips)
    return exp.technique.moves["middle"]


def test_moves_when_no_node_can_take_the_stage_as_is(tmp_path: Path) -> None:
    moves = {(m["kind"], m["node"]): m for m in _moves(tmp_path, SMALL)}
    assert set(moves) == {("as_is", "d1"), ("as_is", "e2"), ("as_is", "c1"),
                          ("merge_down", "c1"), ("merge_up", "d1")}
    # a new stage process (90 MB) fits nowhere: d1 150 - head; e2 64; c1 200 - tail -
    # the controller; merging the middle's few kB into a neighbour fits both neighbours
    assert [k for k, m in moves.items() if m["fits"]] == [("merge_down", "c1"),
                                                          ("merge_up", "d1")]
    assert moves[("as_is", "c1")]["free_mb"] == pytest.approx(200 - 2 * 90, abs=1)
    down, up = moves[("merge_down", "c1")], moves[("merge_up", "d1")]
    assert down["cut"] == {"inputs": ["h"], "outputs": ["logits"]} and down["into"] == "tail"
    assert up["cut"] == {"inputs": ["image"], "outputs": ["m", "h"]} and up["into"] == "head"
    assert Path(down["file"]).parent == tmp_path / "partitions" == Path(up["file"]).parent
    # the upstream stage's new route: the tail, sent h alone / the merged head's m and h
    assert down["route"]["head"]["inputs"] == ["h"] and down["route"]["head"]["model"] == "tail"
    assert up["route"]["head"]["inputs"] == ["m", "h"]
    assert all(m["predicted_ms"] > 0 and m["hops"] for m in moves.values())


def test_without_memory_limits_every_move_fits_and_speed_decides(tmp_path: Path) -> None:
    # A slow uplink no longer decides: traffic takes the least-delay path (d1-e2-c1),
    # whichever stage runs where, so merging (one hop fewer) wins...
    moves = _moves(tmp_path, "topology.links={d1-c1:{delay_ms:20}}")
    assert all(m["fits"] for m in moves)
    best = ranked(moves, "e1")[0]
    assert best is not None and best["kind"] in ("merge_down", "merge_up"), best
    # ...unless the nodes a merge would load are slow: 2 % of a core on d1 and c1 makes
    # every partition there ~50x slower, and the middle as is on e2 wins
    moves = _moves(tmp_path, "topology.nodes={d1:{cpu:0.02},c1:{cpu:0.02}}")
    best = ranked(moves, "e1")[0]
    assert best is not None and (best["kind"], best["node"]) == ("as_is", "e2"), best
    assert ranked(moves, "e2")[0]["node"] != "e2"  # never onto the failed node


def test_the_controller_chooses_the_fastest_move_that_fits() -> None:
    moves = [{"kind": "as_is", "node": "e2", "fits": False, "predicted_ms": 1.0},
             {"kind": "merge_up", "node": "d1", "fits": True, "predicted_ms": 3.0},
             {"kind": "merge_down", "node": "c1", "fits": True, "predicted_ms": 2.0}]
    assert [m["kind"] for m in ranked(moves, "e1")] == ["merge_down", "merge_up"]
    assert ranked(moves, "c1")[0]["kind"] == "merge_up"
    assert ranked([moves[0]], "e1") == []


@pytest.mark.parametrize("overrides,key", [
    (["technique.mode=split"], "technique.mode"),
    (["technique.stage_mb=0"], "technique.stage_mb"),
    (["topology.nodes={e9:{mem_mb:64}}"], "topology.nodes.e9"),
    (["topology.nodes={e2:{disk_mb:64}}"], "topology.nodes.e2.disk_mb"),
    (["topology.nodes={e2:{mem_mb:-1}}"], "topology.nodes.e2.mem_mb"),
])
def test_bad_settings_name_the_key(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError) as e:
        compose_experiment(*REPART, *overrides)
    assert str(e.value).startswith(key), str(e.value)


def test_a_stage_loads_a_merged_partition_in_place(tmp_path: Path) -> None:
    """The tail, told to load middle+tail, answers from h alone -- what head -> middle ->
    tail answered; a bad file is refused and the stage keeps serving."""
    from harness.pipeline.partition import split_model
    from harness.pipeline.sessions import load_session

    digits = REPO / "models" / "digits"
    merged = split_model(digits / "full.onnx", {"middle_tail": (["h"], ["logits"])},
                         tmp_path)["middle_tail"]
    port = free_port("127.0.0.1")
    proc, _ = start_stage("--model", str(digits / "tail.onnx"), "--name", "tail",
                          "--host", "127.0.0.1", "--port", str(port))
    target = f"127.0.0.1:{port}"
    try:
        h = load_session(digits / "head.onnx").run(
            None, {"image": np.random.default_rng(0).random((1, 1, 32, 32), np.float32)})[0]
        bad = control_call(target, "LoadModel", {"path": str(tmp_path / "nothing.onnx")})
        assert not bad["ok"] and "LoadModel" in bad["error"]
        ok = control_call(target, "LoadModel", {"path": str(merged)})
        assert ok["ok"] and ok["load_ms"] > 0, ok
        stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(target))
        got = decode_outputs(stub.ModelInfer(infer_request("tail", {"h": h}), timeout=5))
        m = load_session(digits / "middle.onnx").run(None, {"h": h})[0]
        want = load_session(digits / "tail.onnx").run(None, {"m": m, "h": h})[0]
        assert np.allclose(got["logits"], want, atol=1e-5)
    finally:
        stop_stage(proc)
