"""Failover replication: replicas of stages on other nodes (FailLite, MEL, ParM).

`mode`: `warm` (replica loaded and serving; the upstream stage fails over on a
health-check detection or a failed attempt), `cold` (replica started only once a
failure is detected; recovery = detection + process start + model load + first
inference + reroute), `active_active` (upstream asks primary and replica, first
answer wins; `hedge_ms` > 0 asks the replica only after that delay). `variant`
serves a smaller model as the replica (heterogeneous failover).

In the stage upstream of a replicated one, warm and cold failover are the pipeline's
own `ordered` policy over primary and replica, watched by the health checker; active-
active is this technique's `hedge` policy (node/hedge.py).
"""

from __future__ import annotations

import threading
from pathlib import Path

from harness.core.config import ConfigError, fail
from harness.emulation.topology import Topology
from harness.pipeline.config import resolve
from harness.pipeline.deployment import Deployment
from harness.pipeline.instances import Instance, startup_phases
from harness.pipeline.plan import PipelinePlan
from harness.techniques.base import Record, Technique, check_moves, health_watch, positive
from harness.techniques.failover.node.hedge import Hedge

MODES = ("warm", "cold", "active_active")


class Failover(Technique):
    name = "failover"

    def __init__(self, mode: str = "warm", replicas: dict[str, str] | None = None,
                 variant: dict[str, str] | None = None, health_period_ms: float = 25.0,
                 health_timeout_ms: float = 50.0, attempt_timeout_ms: float | None = None,
                 hedge_ms: float = 0.0, detector: str = "probe", idle_probe_ms: float = 250.0,
                 suspect_min_ms: float = 25.0) -> None:
        if mode not in MODES:
            fail("technique.mode", mode, f"one of {', '.join(MODES)}")
        if not replicas:
            fail("technique.replicas", replicas, "name at least one stage: its replica node")
        if attempt_timeout_ms is not None:
            positive(attempt_timeout_ms=attempt_timeout_ms)
        if hedge_ms < 0:
            fail("technique.hedge_ms", hedge_ms, "must be >= 0")
        if detector == "passive" and mode == "active_active":
            fail("technique.detector", detector, "active_active asks every target anyway; "
                 "passive watches the calls of warm or cold failover")
        self.mode, self.replicas = mode, dict(replicas)
        self.variant = {k: v for k, v in (variant or {}).items() if v}
        self.health = health_watch(detector, health_period_ms, health_timeout_ms,
                                   idle_probe_ms, suspect_min_ms)
        self.attempt_timeout_ms, self.hedge_ms = attempt_timeout_ms, hedge_ms
        self.watch: threading.Thread | None = None
        self.stopped = threading.Event()
        self.breakdown: dict | None = None

    def check(self, plan: PipelinePlan, topo: Topology) -> None:
        check_moves("technique.replicas", self.replicas, plan, topo,
                    "the replica is on the node it protects")
        for stage, path in self.variant.items():
            if stage not in self.replicas:
                fail(f"technique.variant.{stage}", path, "not a replicated stage")
            resolve(path, f"technique.variant.{stage}")

    def instances(self, plan: PipelinePlan, files: dict[str, Path],
                  ips: dict[str, str]) -> list[Instance]:
        base = plan.routes(ips)
        out = []
        taken: dict[str, list[int]] = {}  # node -> ports of replicas placed there
        ports = {}
        for stage, node in self.replicas.items():
            ports[stage] = plan.spare_port(node, taken.setdefault(node, []))
            taken[node].append(ports[stage])
        for i, s in enumerate(plan.stages):
            route = base[s.name]
            nxt = plan.stages[i + 1].name if i + 1 < len(plan.stages) else None
            if route is not None and nxt in self.replicas:
                route.targets.append(f"{ips[self.replicas[nxt]]}:{ports[nxt]}")
                route.health = self.health
                route.attempt_timeout_ms = self.attempt_ms(self.attempt_timeout_ms)
                if self.mode == "active_active":
                    route.policy, route.options = "hedge", Hedge(self.hedge_ms)
            out.append(Instance(s.name, s.node, files[s.name], route,
                                port=plan.port_of(s.name)))
            if s.name in self.replicas:
                model = (resolve(self.variant[s.name], "technique.variant")
                         if s.name in self.variant else files[s.name])
                out.append(Instance(s.name, self.replicas[s.name], model, base[s.name],
                                    start=self.mode != "cold", port=ports[s.name]))
        self.plan, self.ips, self.planned = plan, ips, out
        return out

    def start(self, emu, deployment: Deployment, record: Record) -> None:
        if self.mode != "cold":
            return
        self.cold = [inst for inst in self.planned if not inst.start]
        self.watch = threading.Thread(target=self._watch, args=(deployment, record),
                                      name="cold-failover", daemon=True)
        self.watch.start()

    def _watch(self, deployment: Deployment, record: Record) -> None:
        """On the first detection of a protected node, start its cold replica."""
        protected = {f"{self.ips[deployment.spec(i.stage).node]}:{self.plan.port_of(i.stage)}": i
                     for i in self.cold}
        reader = deployment.event_reader()
        while not self.stopped.is_set() and protected:
            for ev in reader.read_new():
                inst = protected.pop(ev["target"], None) if ev["kind"] == "detect" else None
                if inst is None:
                    continue
                t_detect = ev["t"]
                try:
                    deployment.launch(inst)
                    info = deployment.wait_ready(inst)
                except (RuntimeError, ConfigError) as e:
                    record("technique.error", inst.node, {"error": str(e)})
                    continue
                self.breakdown = startup_phases(info, t_detect)
                record("recover.start_replica", inst.node,
                       {"stage": inst.stage, **self.breakdown}, at=info["t_ready"])
            self.stopped.wait(0.005)

    def stop(self) -> None:
        self.stopped.set()
        if self.watch:
            self.watch.join(timeout=5)

    def recovery_breakdown_from(self, events: list[dict]) -> dict | None:
        return self.breakdown
