"""Pipeline reconfiguration: a controller re-places failed stages on surviving nodes.

A controller process on `controller_node` probes every watched stage over the
emulated network; when one fails it has the stage started on its `replace`
node (cold start: process, model load, first inference) and pushes the new
route to the upstream stage. Recovery is broken out into detection, spawn,
process start, model load, first inference, route push and reroute.
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

from harness.core.config import fail
from harness.core.files import write_json
from harness.emulation.topology import Topology
from harness.pipeline.config import PipelineConfig
from harness.pipeline.deployment import Deployment, Instance, primaries, routes, startup_phases
from harness.techniques.base import Record, Technique, check_moves, positive


class Reconfiguration(Technique):
    name = "reconfiguration"

    def __init__(self, controller_node: str = "c1", replace: dict[str, str] | None = None,
                 health_period_ms: float = 50.0, health_timeout_ms: float = 100.0,
                 failures: int = 2) -> None:
        if not replace:
            fail("technique.replace", replace, "name at least one stage: the node to move it to")
        positive(health_period_ms=health_period_ms, health_timeout_ms=health_timeout_ms)
        if failures < 1:
            fail("technique.failures", failures, "must be >= 1")
        self.controller_node, self.replace = controller_node, dict(replace)
        self.period_ms, self.timeout_ms, self.failures = (health_period_ms, health_timeout_ms,
                                                          failures)
        self.proc: subprocess.Popen | None = None
        self.thread: threading.Thread | None = None
        self.breakdown: dict | None = None
        self.t_spawned: dict[str, dict] = {}

    def check(self, pipe: PipelineConfig, topo: Topology) -> None:
        if self.controller_node not in {n.name for n in topo.nodes}:
            fail("technique.controller_node", self.controller_node, "unknown node")
        check_moves("technique.replace", self.replace, pipe, topo,
                    "that is the node it fails on")

    def instances(self, pipe: PipelineConfig, files: dict[str, Path],
                  ips: dict[str, str]) -> list[Instance]:
        self.pipe, self.files, self.ips = pipe, files, ips
        self.base = routes(pipe, ips)
        return primaries(pipe, files, self.base)

    def start(self, emu, deployment: Deployment, record: Record) -> None:
        names = [s.name for s in self.pipe.stages]
        port = self.pipe.port
        watch = []
        for stage in self.replace:
            up = self.pipe.stages[names.index(stage) - 1]
            watch.append({"stage": stage,
                          "addr": f"{self.ips[deployment.spec(stage).node]}:{port}",
                          "upstream_addr": f"{self.ips[up.node]}:{port}",
                          "route": self.base[up.name].to_json()})
        plan = {"node": self.controller_node, "watch": watch, "replace": self.replace,
                "period_ms": self.period_ms, "timeout_ms": self.timeout_ms,
                "failures": self.failures}
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

    def recovery_breakdown_from(self, events: list[dict]) -> dict | None:
        """Phases of the first re-placement, from the controller's events (monotonic t)."""
        if not self.t_spawned:
            return None
        stage, info = next(iter(self.t_spawned.items()))
        detect = [e["t"] for e in events if e["kind"] == "detect" and e.get("stage") == stage]
        pushed = [e["t"] for e in events if e["kind"] == "reconfigure"
                  and e.get("stage") == stage]
        if not detect or not pushed:
            return None
        return {**startup_phases(info, detect[0]),
                "route_push_ms": (pushed[0] - info["t_ready"]) * 1000}
