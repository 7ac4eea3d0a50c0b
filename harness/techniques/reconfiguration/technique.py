"""Pipeline reconfiguration: a controller re-places failed stages on surviving nodes.

A controller process on `controller_node` probes every watched stage over the
emulated network; when one fails it has the stage started on its `replace`
node (cold start: process, model load, first inference) and pushes the new
route to the upstream stage. Recovery is broken out into detection, spawn,
process start, model load, first inference, route push and reroute.

With `mode: repartition` the controller instead chooses, when the stage's node
fails, a new cut of the model over the surviving nodes (repartition.py): the
stage as is on another node, or its part merged into the stage before or after
it, which loads the new partition in place -- whichever fits the nodes' memory and
is predicted fastest. The choice, every candidate with its inputs and predicted
latency, and the time to decide are the `repartition` event; the summary's
`reconfiguration` has the chosen cut.
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

from harness.core.config import fail
from harness.core.files import write_json
from harness.emulation.topology import Topology
from harness.pipeline.deployment import Deployment
from harness.pipeline.instances import Instance, primaries, startup_phases
from harness.pipeline.plan import PipelinePlan
from harness.techniques.base import Record, Technique, check_moves, positive
from harness.techniques.reconfiguration.repartition import plan_moves

MODES = ("replace", "repartition")


class Reconfiguration(Technique):
    name = "reconfiguration"

    def __init__(self, controller_node: str = "c1", replace: dict[str, str] | None = None,
                 health_period_ms: float = 50.0, health_timeout_ms: float = 100.0,
                 failures: int = 2, mode: str = "replace", stage_mb: float = 90.0,
                 hop_ms: float = 0.5) -> None:
        if not replace:
            fail("technique.replace", replace, "name at least one stage: the node to move it to")
        positive(health_period_ms=health_period_ms, health_timeout_ms=health_timeout_ms)
        if failures < 1:
            fail("technique.failures", failures, "must be >= 1")
        if mode not in MODES:
            fail("technique.mode", mode, f"one of {', '.join(MODES)}")
        positive(stage_mb=stage_mb)
        if not 0 <= hop_ms <= 1000:
            fail("technique.hop_ms", hop_ms, "must be in [0, 1000]")
        self.mode, self.stage_mb, self.hop_ms = mode, stage_mb, hop_ms
        self.moves: dict[str, list[dict]] = {}
        self.controller_node, self.replace = controller_node, dict(replace)
        self.period_ms, self.timeout_ms, self.failures = (health_period_ms, health_timeout_ms,
                                                          failures)
        self.proc: subprocess.Popen | None = None
        self.thread: threading.Thread | None = None
        self.breakdown: dict | None = None
        self.t_spawned: dict[str, dict] = {}

    def check(self, plan: PipelinePlan, topo: Topology) -> None:
        if self.controller_node not in {n.name for n in topo.nodes}:
            fail("technique.controller_node", self.controller_node, "unknown node")
        check_moves("technique.replace", self.replace, plan, topo,
                    "that is the node it fails on")
        if self.mode == "repartition" and plan.config.model_file is None:
            fail("technique.mode", self.mode, "re-partitioning cuts pipeline.model_file")
        self.topo = topo

    def instances(self, plan: PipelinePlan, files: dict[str, Path],
                  ips: dict[str, str]) -> list[Instance]:
        self.plan, self.files, self.ips = plan, files, ips
        self.base = plan.routes(ips)
        if self.mode == "repartition":  # cut and time every move now, not at failure time
            parts = self.parts_dir
            if parts is None:
                fail("technique.mode", self.mode, "re-partitioning needs the run's "
                                                  "partitions folder (parts_dir)")
            self.moves = {stage: plan_moves(plan, files, self.topo, self.link_defaults, ips,
                                            stage, parts, self.stage_mb, self.hop_ms,
                                            self.base, {self.controller_node: 1})
                          for stage in self.replace}
        return primaries(plan, files, self.base)

    def start(self, emu, deployment: Deployment, record: Record) -> None:
        names = [s.name for s in self.plan.stages]
        port = self.plan.port_of
        watch = []
        for stage in self.replace:
            up = self.plan.stages[names.index(stage) - 1]
            watch.append({"stage": stage, "node": deployment.spec(stage).node,
                          "addr": f"{self.ips[deployment.spec(stage).node]}:{port(stage)}",
                          "upstream_addr": f"{self.ips[up.node]}:{port(up.name)}",
                          "route": self.base[up.name].to_json()})
        plan = {"node": self.controller_node, "watch": watch, "replace": self.replace,
                "period_ms": self.period_ms, "timeout_ms": self.timeout_ms,
                "failures": self.failures, "mode": self.mode, "moves": self.moves}
        plan_file = deployment.dir / "controller.plan.json"
        write_json(plan_file, plan)
        log = open(deployment.dir / "controller.log", "w")
        node = emu.nodes[self.controller_node]
        self.proc = node.popen(
            [node.python, "-m", "harness.techniques.reconfiguration.node.controller",
             str(plan_file), str(deployment.dir / "controller.events.jsonl")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
        self.thread = threading.Thread(target=self._serve, args=(deployment, record),
                                       name="reconfiguration", daemon=True)
        self.thread.start()

    def _serve(self, deployment: Deployment, record: Record) -> None:
        """Act as the node agent: start the stages the controller asks for."""
        assert self.proc is not None and self.proc.stdout and self.proc.stdin
        for line in self.proc.stdout:
            req = json.loads(line)
            stage, node = req["stage"], req["node"]
            inst = Instance(stage, node, self.files[stage], self.base.get(stage))
            try:
                deployment.launch(inst)
                info = deployment.wait_ready(inst)
                reply = {"ok": True, "addr": f"{self.ips[node]}:{inst.port}"}
            except RuntimeError as e:
                record("technique.error", node, {"stage": stage, "error": str(e)})
                reply = {"ok": False, "error": str(e)}
                info = None
            try:
                self.proc.stdin.write(json.dumps(reply) + "\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                return
            if info:
                self.t_spawned[stage] = info

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
        if self.thread:
            self.thread.join(timeout=5)

    def summary_from(self, events: list[dict]) -> dict:
        """The chosen re-partitioning, from the controller's `repartition` event."""
        chosen = [e for e in events if e["kind"] == "repartition"]
        if not chosen:
            return {}
        e = chosen[-1]  # the move made (an earlier one may have failed to be made)
        move = e.get("move") or {}
        return {"reconfiguration": {
            "mode": self.mode, "stage": e.get("stage"), "move": move.get("kind"),
            "node": move.get("node"), "into": move.get("into"), "cut": move.get("cut"),
            "predicted_ms": move.get("predicted_ms"), "decide_ms": e.get("decide_ms"),
            "candidates": [{k: m.get(k) for k in ("kind", "node", "fits", "predicted_ms",
                                                  "need_mb", "free_mb")}
                           for m in e.get("candidates", [])]}}

    def recovery_breakdown_from(self, events: list[dict]) -> dict | None:
        """Phases of the first re-placement, from the controller's events (monotonic t)."""
        merged = self._merge_breakdown(events)
        if merged is not None or not self.t_spawned:
            return merged
        stage, info = next(iter(self.t_spawned.items()))
        detect = [e["t"] for e in events if e["kind"] == "detect" and e.get("stage") == stage]
        pushed = [e["t"] for e in events if e["kind"] == "reconfigure"
                  and e.get("stage") == stage]
        if not detect or not pushed:
            return None
        return {**startup_phases(info, detect[0]),
                "route_push_ms": (pushed[0] - info["t_ready"]) * 1000}

    @staticmethod
    def _merge_breakdown(events: list[dict]) -> dict | None:
        """A merge's phases: detect, decide, the neighbour loading the new partition, and
        the route push (the rest of the time between the decision and the reconfigure)."""
        def first(kind: str) -> dict | None:
            return next((e for e in events if e["kind"] == kind), None)

        made = [e for e in events if e["kind"] == "repartition"]
        detect, chosen, done = first("detect"), made[-1] if made else None, first("reconfigure")
        if not (detect and chosen and done) or done.get("load_ms") is None:
            return None
        load_ms = done["load_ms"]
        return {"t_detect": detect["t"], "decide_ms": chosen.get("decide_ms", 0.0),
                "load_ms": load_ms,
                "route_push_ms": (done["t"] - chosen["t"]) * 1000 - load_ms}
