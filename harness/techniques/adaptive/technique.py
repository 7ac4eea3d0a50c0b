"""An adaptive policy: when a stage's node fails, choose among the actions the deployment
allows by a stated objective, instead of always doing the same thing.

Before the run the technique deploys every allowed action -- `failover` (a warm
replica of the stage on `replica`), `skip` (the skip connection around it, as
technique=structural), `early_exit` (the model's early exit beside the stage
before it) and `repartition` (the stage's part merged into a neighbour's partition,
cut now and loaded by the neighbour when chosen: the fastest merge that fits, as
technique=reconfiguration's repartition mode plans them) -- and predicts each one's
end-to-end latency from the topology, the links and the partitions' measured inference
times (predict.py), with its accuracy from the model card. The plan rides on the
upstream stage's route; when that stage finds the target down (its passive detector or
probes), it chooses in place (its `plan` policy, node/plan.py): the most accurate action
whose predicted latency meets the SLO, else the fastest. The plan with all its inputs is an event
(`adaptive.plan`); each decision too (`decide`: the choice, every candidate, and the
time it took to decide).
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.core.config import fail
from harness.emulation.topology import Topology
from harness.pipeline.config import resolve
from harness.pipeline.instances import Instance, primaries
from harness.pipeline.plan import PipelinePlan
from harness.pipeline.routing import Route
from harness.techniques import predict
from harness.techniques.adaptive.node.plan import Action, Plan
from harness.techniques.base import Record, Technique, check_moves, health_watch, positive
from harness.techniques.structural.technique import Structural, exit_beside, skip_route

ACTIONS = ("failover", "skip", "early_exit", "repartition")
CARD_KEYS = {"failover": "split", "skip": "skip_only", "early_exit": "early_exit",
             "repartition": "split"}


class Adaptive(Technique):
    name = "adaptive"

    def __init__(self, stage: str = "middle", actions: list[str] | None = None,
                 replica: str = "e2", early_exit: str | None = None,
                 slo_ms: float | None = None, accuracy: dict[str, float] | None = None,
                 hop_ms: float = 0.5, stage_mb: float = 90.0, detector: str = "passive",
                 health_period_ms: float = 25.0, health_timeout_ms: float = 50.0,
                 attempt_timeout_ms: float | None = None, idle_probe_ms: float = 250.0,
                 suspect_min_ms: float = 25.0) -> None:
        self.actions = list(actions if actions is not None else ["failover", "skip"])
        if not self.actions or isinstance(actions, str):
            fail("technique.actions", actions, f"a non-empty list of {', '.join(ACTIONS)}")
        for i, a in enumerate(self.actions):
            if a not in ACTIONS:
                fail(f"technique.actions[{i}]", a, f"one of {', '.join(ACTIONS)}")
        if "early_exit" in self.actions and not early_exit:
            fail("technique.early_exit", early_exit, "the early_exit action needs the exit model")
        if slo_ms is not None:
            positive(slo_ms=slo_ms)
        if attempt_timeout_ms is not None:
            positive(attempt_timeout_ms=attempt_timeout_ms)
        if not 0 <= hop_ms <= 1000:
            fail("technique.hop_ms", hop_ms, "must be in [0, 1000]")
        self.stage, self.replica, self.early_exit = stage, replica, early_exit
        positive(stage_mb=stage_mb)
        self.slo_ms, self.hop_ms, self.stage_mb = slo_ms, hop_ms, stage_mb
        self.accuracy = dict(accuracy or {})
        for k, v in self.accuracy.items():
            if k not in ACTIONS or not isinstance(v, int | float) or not 0 <= v <= 1:
                fail(f"technique.accuracy.{k}", v, f"an action ({', '.join(ACTIONS)}) -> "
                                                   "an accuracy in [0, 1]")
        self.health = health_watch(detector, health_period_ms, health_timeout_ms,
                                   idle_probe_ms, suspect_min_ms)
        self.attempt_timeout_ms = attempt_timeout_ms
        self.plan_event: dict = {}

    def check(self, plan: PipelinePlan, topo: Topology) -> None:
        # the skip connection and the exit are checked as technique=structural checks them
        names = [s.name for s in plan.stages]
        if self.stage not in names or names.index(self.stage) == 0:
            fail("technique.stage", self.stage, f"a stage with one before it (stages: "
                                                f"{names})")
        if "repartition" in self.actions:
            self._check_merge(plan, names.index(self.stage))
        self.structural = Structural(skip_stage=self.stage, early_exit=self.early_exit)
        if "skip" in self.actions:
            Structural(skip_stage=self.stage).check(plan, topo)
        if "early_exit" in self.actions:
            self.structural.check(plan, topo)
        if "failover" in self.actions:
            check_moves("technique.replica", {self.stage: self.replica}, plan, topo,
                        "the replica is on the node it protects")
        self.topo = topo
        card = (resolve(plan.config.model_file, "pipeline.model_file").parent / "card.json"
                if plan.config.model_file else None)
        figures = json.loads(card.read_text()).get("test_accuracy", {}) \
            if card and card.is_file() else {}
        for a in self.actions:
            if a not in self.accuracy:
                if CARD_KEYS[a] not in figures:
                    fail(f"technique.accuracy.{a}", None,
                         f"no {CARD_KEYS[a]!r} figure in {card}: give the action's accuracy")
                self.accuracy[a] = float(figures[CARD_KEYS[a]])

    def instances(self, plan: PipelinePlan, files: dict[str, Path],
                  ips: dict[str, str]) -> list[Instance]:
        names = [s.name for s in plan.stages]
        i = names.index(self.stage)
        up, carries = plan.stages[i - 1], plan.carries()
        slo = self.slo_ms if self.slo_ms is not None else self.workload_slo_ms
        base = plan.routes(ips)
        extra: list[Instance] = []
        actions, paths = [], {}
        rest = [(s.node, files[s.name], carries[k]) for k, s in enumerate(plan.stages)
                if k > i]
        for a in self.actions:
            if a == "failover":
                port = plan.spare_port(self.replica, [x.port for x in extra
                                                       if x.node == self.replica])
                route = Route(self.stage, [f"{ips[self.replica]}:{port}"], carries[i])
                hops = [(self.replica, files[self.stage], carries[i]), *rest]
                extra.append(Instance(self.stage, self.replica, files[self.stage],
                                      base[self.stage], port=port))
            elif a == "skip":
                route = skip_route(plan, files, ips, i)
                hops = rest
            elif a == "repartition":
                merge = self._merge(plan, files, ips, base)
                route = Route.from_json(next(iter(merge["route"].values())))  # type: ignore
                actions.append(Action(a, route, merge["predicted_ms"], self.accuracy[a],
                                      load={"target": merge["load"], "path": merge["file"]}))
                paths[a] = {k: merge[k] for k in ("predicted_ms", "hops", "kind", "node",
                                                  "cut")}
                continue
            else:
                assert self.early_exit is not None
                route, inst = exit_beside(plan, ips, up.node, self.early_exit,
                                          self.structural.exit_inputs,
                                          [x.port for x in extra if x.node == up.node])
                hops = [(up.node, inst.model_file, self.structural.exit_inputs)]
                extra.append(inst)
            paths[a] = self._predict(plan, files, i, hops)
            actions.append(Action(a, route, paths[a]["predicted_ms"], self.accuracy[a]))
        primary = self._predict(plan, files, i, [(plan.stages[i].node, files[self.stage],
                                                  carries[i]), *rest])
        route = base[up.name]
        assert route is not None
        route.health = self.health
        # half the requests' deadline (the workload's SLO), not of the objective's: a
        # tight objective (25 ms) only chooses among paths, and 12.5 ms attempts timed
        # out calls a busy machine had merely delayed
        route.attempt_timeout_ms = self.attempt_ms(self.attempt_timeout_ms)
        route.policy, route.options = "plan", Plan(slo, actions)
        self.up_node = up.node  # the stage that decides
        self.plan_event = {"stage": self.stage, "slo_ms": slo, "objective":
                           "the most accurate action predicted within the SLO, else the "
                           "fastest", "primary": primary,
                           "actions": {a: {**paths[a], "accuracy": self.accuracy[a]}
                                       for a in self.actions}}
        return primaries(plan, files, base) + extra

    def _check_merge(self, plan: PipelinePlan, k: int) -> None:
        """The stage's part and the next stage's must be one valid cut of model_file."""
        from harness.core.config import ConfigError
        from harness.pipeline.partition import check_cut, load_model
        from harness.techniques.reconfiguration.repartition import merge_down_cut

        if plan.config.model_file is None or k + 1 >= len(plan.stages):
            fail("technique.actions", self.actions, f"repartition merges stage {self.stage} "
                 "into the stage after it: needs one, cut from pipeline.model_file")
        ins, outs = merge_down_cut(plan, k)
        try:
            check_cut(load_model(resolve(plan.config.model_file, "pipeline.model_file")), ins, outs)
        except ConfigError as e:
            fail("technique.actions", self.actions, f"repartition: {e}")

    def _merge(self, plan: PipelinePlan, files: dict[str, Path], ips: dict[str, str],
               base: dict) -> dict:
        """The fastest merge of the stage's part into the stage after it that fits its
        memory (the stage after loads it: the deciding stage's own outputs stay as they
        are, so requests it has already run go on)."""
        from harness.techniques.reconfiguration.repartition import plan_moves

        parts = self.parts_dir
        if parts is None:
            fail("technique.actions", self.actions, "repartition needs the run's partitions "
                                                    "folder (parts_dir)")
        moves = [m for m in plan_moves(plan, files, self.topo, self.link_defaults, ips,
                                       self.stage, parts, self.stage_mb, self.hop_ms, base)
                 if m["kind"] == "merge_down" and m["fits"]]
        if not moves:
            fail("technique.actions", self.actions, "repartition: no merge of stage "
                 f"{self.stage} into a neighbour is a valid cut that fits its node")
        return min(moves, key=lambda m: m["predicted_ms"])

    def _predict(self, plan: PipelinePlan, files: dict[str, Path], i: int,
                 hops: list[tuple[str, Path, list[str]]]) -> dict:
        """The latency of a request from the first sensor through the stages before
        stage i (as placed) and then `hops` ((node, partition, tensors it takes) each)."""
        sensor = next(n.name for n in self.topo.nodes if n.role == "sensor")
        path = [(s.node, files[s.name], plan.carries()[k])
                for k, s in enumerate(plan.stages[:i])] + hops
        return predict.latency(self.topo, self.link_defaults, sensor, path, self.hop_ms)

    def start(self, emu, deployment, record: Record) -> None:
        record("adaptive.plan", self.up_node, _jsonable(self.plan_event))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float):
        return round(obj, 4)
    return obj
