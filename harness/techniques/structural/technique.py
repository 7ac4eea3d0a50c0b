"""Structural resilience: the model itself tolerates a missing partition (ResiliNet).

The digits model's tail was trained with failout to answer from the skip
connection alone. When the skipped stage's node cannot be reached (health check
or a failed attempt), the upstream stage sends the skip tensor straight to the
next stage with zeros in place of the missing tensor, and the answer is marked
degraded; when the node answers again, the full path is used again. The model
also has an early exit: with `early_exit` set, the stage before the skipped one
falls back to that exit, served beside it, instead. The upstream stage does this by
the route's `fallback` policy (node/fallback.py).
"""

from __future__ import annotations

from pathlib import Path

from harness.core.config import fail
from harness.emulation.topology import Topology
from harness.pipeline.config import resolve
from harness.pipeline.instances import Instance, primaries
from harness.pipeline.plan import PipelinePlan
from harness.pipeline.routing import Route
from harness.techniques.base import Technique, health_watch, positive
from harness.techniques.structural.node.fallback import Fallback


class Structural(Technique):
    name = "structural"

    def __init__(self, skip_stage: str = "middle", health_period_ms: float = 25.0,
                 health_timeout_ms: float = 50.0, attempt_timeout_ms: float | None = None,
                 early_exit: str | None = None, detector: str = "probe",
                 idle_probe_ms: float = 250.0, suspect_min_ms: float = 25.0) -> None:
        if attempt_timeout_ms is not None:
            positive(attempt_timeout_ms=attempt_timeout_ms)
        self.skip_stage = skip_stage
        self.early_exit = early_exit  # a model answering from the upstream stage's output
        self.health = health_watch(detector, health_period_ms, health_timeout_ms,
                                   idle_probe_ms, suspect_min_ms)
        self.attempt_timeout_ms = attempt_timeout_ms

    def check(self, plan: PipelinePlan, topo: Topology) -> None:
        if self.early_exit is not None:
            self._check_early_exit(plan)
            return
        names = [s.name for s in plan.stages]
        if self.skip_stage not in names:
            fail("technique.skip_stage", self.skip_stage, f"unknown stage (stages: {names})")
        i = names.index(self.skip_stage)
        if i == 0 or i == len(names) - 1:
            fail("technique.skip_stage", self.skip_stage,
                 "needs a stage before it and one after it to skip between")
        skipped = plan.stages[i]
        after = plan.stages[i + 1]
        produced_elsewhere = {t for s in plan.stages[:i] for t in s.outputs}
        missing = [t for t in after.inputs if t in skipped.outputs]
        if not missing or not all(t not in produced_elsewhere for t in missing):
            fail("technique.skip_stage", self.skip_stage, "the next stage does not take the "
                                                          "skipped stage's output")
        skip = [t for t in after.inputs if t not in skipped.outputs]
        if not skip:
            fail("technique.skip_stage", self.skip_stage,
                 f"stage {after.name} has no skip input from before {self.skip_stage}: the "
                 "model has no skip connection around it")

    def _check_early_exit(self, plan: PipelinePlan) -> None:
        """The exit model must take what the stage before the skipped one sends on."""
        from harness.pipeline.sessions import load_session

        names = [s.name for s in plan.stages]
        if self.skip_stage not in names or names.index(self.skip_stage) == 0:
            fail("technique.skip_stage", self.skip_stage,
                 "needs a known stage with a stage before it")
        i = names.index(self.skip_stage)
        sess = load_session(resolve(self.early_exit, "technique.early_exit"))
        ins = [x.name for x in sess.get_inputs()]
        outs = [x.name for x in sess.get_outputs()]
        if not set(ins) <= set(plan.carries()[i]):
            fail("technique.early_exit", self.early_exit,
                 f"takes {ins}, but stage {self.skip_stage} receives {plan.carries()[i]}")
        if plan.config.output not in outs:
            fail("technique.early_exit", self.early_exit, f"does not output {plan.config.output!r}")
        self.exit_inputs = ins

    def instances(self, plan: PipelinePlan, files: dict[str, Path],
                  ips: dict[str, str]) -> list[Instance]:
        base = plan.routes(ips)
        names = [s.name for s in plan.stages]
        i = names.index(self.skip_stage)
        up = plan.stages[i - 1]
        route = base[up.name]
        assert route is not None
        route.health = self.health
        route.attempt_timeout_ms = self.attempt_ms(self.attempt_timeout_ms)
        if self.early_exit is not None:
            fallback, inst = exit_beside(plan, ips, up.node, self.early_exit,
                                         self.exit_inputs)
            route.policy, route.options = "fallback", Fallback(fallback)
            return primaries(plan, files, base) + [inst]
        route.policy, route.options = "fallback", Fallback(skip_route(plan, files, ips, i))
        return primaries(plan, files, base)


def skip_route(plan: PipelinePlan, files: dict[str, Path], ips: dict[str, str],
               i: int) -> Route:
    """Around stage i, straight to the stage after it, with zeros for what stage i would
    have produced; its answers are degraded."""
    after = plan.stages[i + 1]
    return Route(after.name, [f"{ips[after.node]}:{plan.port_of(after.name)}"],
                 plan.carries()[i + 1], zeros=skip_zeros(plan, files, i), degraded=True)


def exit_beside(plan: PipelinePlan, ips: dict[str, str], node: str, exit_model: str,
                inputs: list[str], taken=()) -> tuple[Route, Instance]:
    """The early exit served on `node`, beside the stage before the skipped one (answers
    without the network, degraded): the route to it and its instance."""
    port = plan.spare_port(node, taken)
    return (Route("early_exit", [f"{ips[node]}:{port}"], inputs, degraded=True),
            Instance("early_exit", node, resolve(exit_model, "technique.early_exit"), None,
                     port=port))


def skip_zeros(plan: PipelinePlan, files: dict[str, Path], i: int) -> dict[str, list[int]]:
    """Zeros for what skipped stage i would have produced, shaped as the next stage
    expects (without the batch dimension)."""
    import onnx

    skipped, after = plan.stages[i], plan.stages[i + 1]
    graph = onnx.load(str(files[after.name])).graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim][1:]
              for v in graph.input}
    return {t: shapes[t] for t in after.inputs if t in skipped.outputs}
