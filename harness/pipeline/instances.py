"""What a technique makes of the pipeline's plan: the stage instances to run (primaries,
replicas, a fusion stage), each a partition on a node with its route; `Deployment`
(deployment.py) starts them as processes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from harness.pipeline.plan import PipelinePlan
from harness.pipeline.routing import Route

JOIN = "harness.pipeline.node.join:Join"  # a join stage's node part


def join_args(plan: PipelinePlan, stage: str, partial_wait_ms: float | None = None
              ) -> list[str]:
    """A join stage's arguments: wait for every branch's tensors; with `partial_wait_ms`
    (a technique's choice, needs the stage's mask) answer after that long with what came."""
    st = next(s for s in plan.stages if s.name == stage)
    spec = {"inputs": st.inputs, "mask": st.mask,
            "wait_ms": partial_wait_ms if partial_wait_ms is not None else st.join_wait_ms,
            "partial": partial_wait_ms is not None}
    return ["--join", JOIN, "--join-args", json.dumps(spec)]


@dataclass
class Instance:
    """One stage process: a stage's partition served on a node (primary or replica)."""

    stage: str  # the model name it serves
    node: str
    model_file: Path | None  # None: a null stage (e.g. fusion) serving `null` tensors
    route: Route | None
    start: bool = True  # False: a cold replica, started when the technique says so
    port: int | None = None  # None: the pipeline's port (the first instance on a node)
    null: str | None = None  # tensors a null stage passes on
    args: list[str] = field(default_factory=list)  # extra stage arguments (e.g. --fuse 2)

    @property
    def key(self) -> str:
        return f"{self.stage}@{self.node}"


def startup_phases(info: dict, t_detect: float) -> dict:
    """From a detection to a started instance serving, in ms (its ready-file instants)."""
    return {
        "t_detect": t_detect,
        "detect_to_spawn_ms": (info["t_spawn"] - t_detect) * 1000,
        "process_start_ms": (info["t_load"] - info["t_spawn"]) * 1000,
        "model_load_ms": (info["t_loaded"] - info["t_load"]) * 1000,
        "first_inference_ms": (info["t_first_inference"] - info["t_loaded"]) * 1000,
        "ready_ms": (info["t_ready"] - info["t_first_inference"]) * 1000,
    }


def primaries(plan: PipelinePlan, files: dict[str, Path],
              stage_routes: dict[str, Route | None]) -> list[Instance]:
    """One instance per stage, on its node and port, with the given routes."""
    joins = plan.joins()
    return [Instance(s.name, s.node, files[s.name], stage_routes.get(s.name),
                     port=plan.port_of(s.name),
                     args=join_args(plan, s.name) if i in joins else [])
            for i, s in enumerate(plan.stages)]


def placed(plan: PipelinePlan, files: dict[str, Path], ips: dict[str, str]) -> list[Instance]:
    """One instance per stage and node of its placement, each routed to the nearest
    instance of the next stage (a fleet: stages placed by role)."""
    carries = plan.carries()
    out = []
    for i, s in enumerate(plan.stages):
        nxt = plan.stages[i + 1] if i + 1 < len(plan.stages) else None
        for node in plan.placement.nodes[s.name]:
            route = None
            if nxt is not None:
                to = plan.placement.next_node(nxt.name, node)
                route = Route(nxt.name, [f"{ips[to]}:{plan.config.port}"], carries[i + 1])
            # a stage placed by node listens where the chain expects it (port_of); a
            # fleet's stages by role are one per node, on the pipeline's port
            out.append(Instance(s.name, node, files[s.name], route,
                                port=plan.config.port if s.role else plan.port_of(s.name)))
    return out
