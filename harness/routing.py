"""Where a stage sends its result, and how it survives a next stage that fails.

A route names the next model, its targets (replicas, in order of preference)
and a policy: `ordered` tries healthy targets one after another within a
per-attempt timeout (failover), `hedge` sends to several at once or after
`hedge_ms` and takes the first answer (active-active / hedged requests). A
`fallback` route (e.g. straight to the tail over the skip connection, with
zeros for the missing tensor) serves when every target has failed. With
`health` set, the stage probes every target (KServe ServerLive) on a period
and skips targets marked down; transitions are recorded as events.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

POLICIES = ("ordered", "hedge")


@dataclass
class Health:
    period_ms: float = 50.0
    timeout_ms: float = 50.0
    failures: int = 1  # consecutive failed probes before a target is marked down


@dataclass
class Route:
    model: str = ""
    targets: list[str] = field(default_factory=list)  # host:port, in order of preference
    inputs: list[str] = field(default_factory=list)  # tensors the next model takes
    policy: str = "ordered"
    attempt_timeout_ms: float = 0.0  # 0 = the caller's whole deadline
    hedge_ms: float = 0.0  # hedge: delay before the next target is also asked
    health: Health | None = None
    zeros: dict[str, list[int]] = field(default_factory=dict)  # missing tensors -> shape
    fallback: Route | None = None
    degraded: bool = False  # answers through this route are marked degraded

    @classmethod
    def from_json(cls, data: Any) -> Route | None:
        """ValueError (one line) for anything but a well-formed route."""
        if not data:
            return None
        if not isinstance(data, dict):
            raise ValueError("a route is an object with model, targets and inputs")
        model, targets, inputs = data.get("model"), data.get("targets"), data.get("inputs")
        if not isinstance(model, str) or not model:
            raise ValueError(f"route.model={model!r}: must be a model name")
        if (not isinstance(targets, list) or not targets
                or not all(isinstance(t, str) and ":" in t for t in targets)):
            raise ValueError(f"route.targets={targets!r}: must be a non-empty list of host:port")
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            raise ValueError(f"route.inputs={inputs!r}: must be a list of tensor names")
        policy = data.get("policy", "ordered")
        if policy not in POLICIES:
            raise ValueError(f"route.policy={policy!r}: one of {', '.join(POLICIES)}")
        known = {"model", "targets", "inputs", "policy", "attempt_timeout_ms", "hedge_ms",
                 "health", "zeros", "fallback", "degraded"}
        extra = set(data) - known
        if extra:
            raise ValueError(f"route.{sorted(extra)[0]}: unknown key")
        health = data.get("health")
        return cls(model=model, targets=targets, inputs=inputs, policy=policy,
                   attempt_timeout_ms=float(data.get("attempt_timeout_ms", 0.0)),
                   hedge_ms=float(data.get("hedge_ms", 0.0)),
                   health=Health(**health) if health else None,
                   zeros={k: [int(d) for d in v] for k, v in (data.get("zeros") or {}).items()},
                   fallback=cls.from_json(data.get("fallback")),
                   degraded=bool(data.get("degraded", False)))

    def to_json(self) -> dict:
        out: dict[str, Any] = {"model": self.model, "targets": self.targets,
                               "inputs": self.inputs, "policy": self.policy,
                               "attempt_timeout_ms": self.attempt_timeout_ms,
                               "hedge_ms": self.hedge_ms, "zeros": self.zeros,
                               "degraded": self.degraded}
        if self.health:
            out["health"] = self.health.__dict__
        if self.fallback:
            out["fallback"] = self.fallback.to_json()
        return out

    def all_targets(self) -> list[str]:
        return self.targets + (self.fallback.all_targets() if self.fallback else [])


class EventSink:
    """Technique events of a stage as JSON lines (monotonic time; merged by the harness)."""

    def __init__(self, path: str | None, hop: str) -> None:
        self.f = open(path, "a", buffering=1) if path else None
        self.hop = hop
        self.lock = threading.Lock()

    def __call__(self, kind: str, target: str, **detail: Any) -> None:
        if self.f is None:
            return
        line = json.dumps({"t": time.monotonic(), "kind": kind, "target": target,
                           "by": self.hop, **detail})
        with self.lock:
            self.f.write(line + "\n")


class HealthChecker(threading.Thread):
    """Probes targets with ServerLive; `down` holds the targets marked down."""

    def __init__(self, probe, events: EventSink) -> None:
        super().__init__(name="health", daemon=True)
        self.probe = probe  # (target, timeout_s) -> bool
        self.events = events
        self.route: Route | None = None
        self.down: set[str] = set()
        self.seen_up: set[str] = set()  # a target never seen up is starting, not failing
        self.fails: dict[str, int] = {}
        self.stopped = threading.Event()

    def set_route(self, route: Route | None) -> None:
        self.route = route

    def run(self) -> None:
        while not self.stopped.is_set():
            route = self.route
            if route is None or route.health is None:
                self.stopped.wait(0.1)
                continue
            h = route.health
            t0 = time.monotonic()
            for target in route.all_targets():
                ok = self.probe(target, h.timeout_ms / 1000)
                if ok:
                    self.fails[target] = 0
                    self.seen_up.add(target)
                    if target in self.down:
                        self.down.discard(target)
                        self.events("detect.up", target)
                else:
                    self.fails[target] = self.fails.get(target, 0) + 1
                    if (self.fails[target] >= h.failures and target not in self.down
                            and target in self.seen_up):
                        self.down.add(target)
                        self.events("detect", target)
            self.stopped.wait(max(0.0, t0 + h.period_ms / 1000 - time.monotonic()))

    def order(self, targets: list[str]) -> list[str]:
        """Healthy targets first, in route order; targets marked down last."""
        return ([t for t in targets if t not in self.down]
                + [t for t in targets if t in self.down])
