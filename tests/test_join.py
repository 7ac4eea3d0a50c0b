"""Pipelines whose branches meet at a join stage (multi-modal HAR): config, routes and the
join's wait, without the network."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from harness.core.config import ConfigError
from harness.pipeline.instances import primaries
from harness.pipeline.node.join import Join, Missing
from harness.pipeline.node.runner import Runner
from harness.run.experiment import compose_experiment
from harness.workload.samples.har import Har

HAR = ["topology=device_edge_cloud", "workload=har", "pipeline=har"]
IPS = {"d1": "10.0.0.1", "e1": "10.0.0.2"}


class Sum:
    """A model's stand-in: logits = a + b (+ 10 x mask), so the answer shows what it got."""

    inputs = {"a": ("FP32", [-1, 2]), "b": ("FP32", [-1, 2]), "mask": ("FP32", [-1, 2])}
    zeros = Runner.zeros  # the real runner's, for these inputs

    def __init__(self) -> None:
        self.runs = 0

    def run(self, t: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.runs += 1
        return {"logits": t["a"] + t["b"] + 10 * t["mask"]}


def _both(join: Join, rid: str, late_s: float | None = 0.0) -> list:
    """Branch a sends at once, branch b after `late_s` (None: never); both answers."""
    out: list = [None, None]

    def call(i: int, name: str, delay: float) -> None:
        time.sleep(delay)
        try:
            out[i] = join.join(rid, {name: np.ones((1, 2), np.float32) * (i + 1)})
        except Missing as e:
            out[i] = e

    ts = [threading.Thread(target=call, args=(0, "a", 0.0))]
    if late_s is not None:
        ts.append(threading.Thread(target=call, args=(1, "b", late_s)))
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def test_both_branches_one_model_run_same_answer() -> None:
    runner = Sum()
    j = Join(runner, ["a", "b"], "mask", wait_ms=500, partial=True)
    t = time.monotonic()
    (o1, n1, w1), (o2, n2, w2) = _both(j, "1")
    assert time.monotonic() - t < 0.4  # did not wait for the clock
    assert runner.runs == 1 and n1 == n2 == 2 and w1 == w2 == "a+b"
    assert np.allclose(o1["logits"], 1 + 2 + 10) and o1 is o2


def test_partial_join_answers_after_wait_with_the_missing_masked() -> None:
    runner = Sum()
    j = Join(runner, ["a", "b"], "mask", wait_ms=50, partial=True)
    t = time.monotonic()
    (out, n, which), _ = _both(j, "1", late_s=None)
    assert 0.045 <= time.monotonic() - t
    assert n == 1 and which == "a"
    assert np.allclose(out["logits"], [[1 + 0 + 10, 1 + 0 + 0]])  # b zeros, mask [1, 0]
    # the straggler gets the decision made without it
    assert j.join("1", {"b": np.ones((1, 2), np.float32)})[2] == "a" and runner.runs == 1


def test_strict_join_fails_naming_the_missing_input() -> None:
    j = Join(Sum(), ["a", "b"], "mask", wait_ms=30, partial=False)
    (err,) = [x for x in _both(j, "1", late_s=None) if x is not None]
    assert isinstance(err, Missing) and "no b within 30 ms" in str(err)
    # a later arrival of that id (a retry, or the late branch) waits afresh: here the
    # other branch never comes again, so it fails too, naming that one
    with pytest.raises(Missing, match="no a within 30 ms"):
        j.join("1", {"b": np.ones((1, 2), np.float32)})


def test_a_retry_after_a_failed_join_is_joined_afresh() -> None:
    """Sensors warm up with one id: a first try that timed out must not doom the retry."""
    j = Join(Sum(), ["a", "b"], "mask", wait_ms=30, partial=False)
    assert isinstance(_both(j, "warmup", late_s=None)[0], Missing)
    (o1, n1, w1), (o2, n2, w2) = _both(j, "warmup")
    assert n1 == n2 == 2 and w1 == "a+b"


def test_partial_join_needs_a_mask() -> None:
    with pytest.raises(ValueError, match="mask"):
        Join(Sum(), ["a", "b"], None, wait_ms=30, partial=True)


def test_har_pipeline_routes_each_branch_to_the_join() -> None:
    exp = compose_experiment(*HAR)
    pipe = exp.plan
    assert pipe.joins() == [2] and pipe.entries() == [0, 1]
    assert [pipe.port_of(s.name) for s in pipe.stages] == [8001, 8002, 8001]
    assert pipe.entry_for(("gyro",)) == 1 and pipe.entry_for(("image",)) is None
    r = pipe.routes(IPS)
    assert r["acc_encoder"].targets == ["10.0.0.2:8001"] and r["acc_encoder"].inputs == ["emb_acc"]
    assert r["gyro_encoder"].inputs == ["emb_gyro"] and r["fusion"] is None
    files = {s.name: s.model for s in pipe.stages}
    fusion = primaries(pipe, files, r)[2]
    assert fusion.args[:2] == ["--join", "harness.pipeline.node.join:Join"]
    assert '"partial": false' in fusion.args[3]  # the baseline: every modality or nothing
    sr = compose_experiment(*HAR, "technique=sensing_redundancy", "technique.wait_ms=15")
    inst = sr.technique.instances(sr.plan, files, IPS)
    spec = json.loads(inst[2].args[3])  # 15 or 15.0: the config reads a number as a float
    assert len(inst) == 3 and (spec["wait_ms"], spec["partial"]) == (15, True)


@pytest.mark.parametrize("overrides,key", [
    (["pipeline.stages.0.next=nowhere"], "pipeline.stages[0].next"),
    (["pipeline.stages.1.next=acc_encoder"], "pipeline.stages[1].next"),
    (["+pipeline.stages.0.mask=mask"], "pipeline.stages[0].mask"),
    (["pipeline.stages.2.mask=nomask"], "pipeline.stages[2].mask"),
    (["pipeline.stages.2.inputs=[emb_acc,emb_acc]"], "pipeline.stages[2].inputs"),
    (["pipeline.stages.1.outputs=[emb_acc]"], "pipeline.stages[1].outputs"),
    (["pipeline.stages.2.join_wait_ms=0"], "pipeline.stages[2].join_wait_ms"),
    (["pipeline.port=64535"], "pipeline.port"),  # d1's second stage: 64536 + 1000 lean
    (["pipeline.stages.0.model=null"], "pipeline.model_file"),
    (["technique=failover"], "technique"),
    (["workload=digits"], "workload.samples"),
    (["workload.samples.axis_dropout=1.5"], "workload.samples.axis_dropout"),
])
def test_bad_join_pipeline_names_the_key(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError) as e:
        compose_experiment(*HAR, *overrides)
    assert str(e.value).startswith(key), str(e.value)


def test_a_join_model_with_a_mask_input_needs_it_named() -> None:
    """Without `mask`, the fusion model's mask input would never be fed."""
    with pytest.raises(ConfigError) as e:
        compose_experiment(*HAR, "technique=sensing_redundancy", "pipeline.stages.2.mask=null")
    assert str(e.value).startswith("pipeline.stages[2].inputs") and "'mask'" in str(e.value)


def test_axis_dropout_is_reproducible_and_per_sensor() -> None:
    lib = Har(axis_dropout=0.5)
    a = lib.payload(40, 0, seed=0)["acc"]
    assert np.array_equal(a, lib.payload(40, 0, seed=0)["acc"])
    zeroed = [int((lib.payload(i, k, 0)[m][0] == 0).all(axis=1).sum())
              for i in lib.sample_ids() for k, m in enumerate(("acc", "gyro"))]
    assert 0.35 < np.mean(zeroed) / 3 < 0.65  # about half the axes of 80 windows
    assert not np.array_equal(lib.payload(40, 0, 1)["acc"], a)  # the seed draws it
    assert np.array_equal(Har().payload(40, 0, 0)["acc"], Har().payload(40, 0, 7)["acc"])


def test_a_join_is_last_and_branch_stages_take_what_their_sender_gives() -> None:
    from harness.pipeline.config import PipelineConfig, StageSpec
    from harness.pipeline.plan import check_joins

    def pipe(*stages: StageSpec) -> PipelineConfig:
        p = PipelineConfig(model_file=None, stages=list(stages))
        p.validate("pipeline")
        return p

    a = StageSpec("a", "d1", ["x"], ["ea"], model="m", next="j")
    b = StageSpec("b", "d1", ["y"], ["eb"], model="m")
    with pytest.raises(ConfigError, match=r"stages\[2\].name='j': a join stage must be the last"):
        check_joins(pipe(a, b, StageSpec("j", "e1", ["ea", "eb"], ["z"], model="m"),
                         StageSpec("after", "c1", ["z"], ["out"], model="m")).stages, "pipeline")
    b2 = StageSpec("b2", "d1", ["eq"], ["eb"], model="m")  # its sender b gives eb, not eq
    with pytest.raises(ConfigError, match=r"stages\[2\].inputs=\['eq'\]"):
        check_joins(pipe(a, b, b2, StageSpec("j", "e1", ["ea", "eb"], ["z"], model="m")
                         ).stages, "pipeline")
