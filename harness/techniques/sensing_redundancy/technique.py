"""Sensing redundancy: several sensors observe the same phenomenon; fuse what arrives.

Every sensor sends every request (one observation, its own noise: two cameras
seeing the same digit), each through the pipeline; a fusion stage after the last
stage averages the logits of the observations that arrive within `wait_ms` of the
first. A crashed, cut off or noisy sensor costs accuracy, not availability.

With sensors of different modalities (a pipeline whose branches meet at a join
stage, e.g. `pipeline=har`), there is nothing to average: the join stage's model
fuses the modalities itself, and this technique lets it answer `wait_ms` after
the first branch arrives with whatever came, the missing ones masked out.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.core.config import fail
from harness.emulation.topology import Topology
from harness.pipeline.instances import Instance, join_args, primaries
from harness.pipeline.plan import PipelinePlan
from harness.pipeline.routing import Route
from harness.techniques.base import Technique

FUSER = "harness.techniques.sensing_redundancy.node.fusion:Fuser"  # runs in the stage


class SensingRedundancy(Technique):
    name = "sensing_redundancy"
    observations = True
    branches = True

    def __init__(self, fusion_node: str | None = None, wait_ms: float = 20.0) -> None:
        if wait_ms <= 0:
            fail("technique.wait_ms", wait_ms, "must be > 0")
        self.fusion_node, self.wait_ms = fusion_node, wait_ms

    def check(self, plan: PipelinePlan, topo: Topology) -> None:
        sensors = [n.name for n in topo.nodes if n.role == "sensor"]
        if len(sensors) < 2:
            fail("technique", self.name, f"needs at least two sensors (topology has "
                                         f"{len(sensors)})")
        if self.fusion_node is not None and self.fusion_node not in {n.name for n in topo.nodes}:
            fail("technique.fusion_node", self.fusion_node, "unknown node")
        self.n_sensors = len(sensors)
        for j in plan.joins():
            if plan.stages[j].mask is None:
                fail("technique", self.name, f"join stage {plan.stages[j].name} has no mask: "
                                             "its model cannot answer without a modality")

    def instances(self, plan: PipelinePlan, files: dict[str, Path],
                  ips: dict[str, str]) -> list[Instance]:
        base = plan.routes(ips)
        if plan.joins():  # modalities: the join stage answers with what arrived in time
            out = primaries(plan, files, base)
            joins = {plan.stages[j].name for j in plan.joins()}  # each has a mask (check)
            for inst in out:
                if inst.stage in joins:
                    inst.args = join_args(plan, inst.stage, self.wait_ms)
            return out
        last = plan.stages[-1]
        node = self.fusion_node or last.node
        port = plan.spare_port(node)
        base[last.name] = Route("fusion", [f"{ips[node]}:{port}"], [plan.config.output])
        return primaries(plan, files, base) + [
            Instance("fusion", node, None, None, port=port, null=plan.config.output,
                     args=["--join", FUSER, "--join-args",
                           json.dumps({"expected": self.n_sensors, "wait_ms": self.wait_ms})])]
