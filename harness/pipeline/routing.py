"""Where a stage sends its result, and how it survives a next stage that fails.

A route names the next model, its targets (replicas, in order of preference)
and a policy: `ordered` tries healthy targets one after another within a
per-attempt timeout (failover), `hedge` sends to several at once or after
`hedge_ms` and takes the first answer (active-active / hedged requests). A
`fallback` route (e.g. straight to the tail over the skip connection, with
zeros for the missing tensor) serves when every target has failed. With
`health` set, the stage watches every target and skips targets marked down;
transitions are recorded as events. How it watches is the `detector`: `probe`
asks every target (KServe ServerLive) on a period; `passive` learns from the calls
it makes anyway (a target that refuses a call, or takes longer than its own recent
latency allows, is marked down) and probes only targets that are down or idle.
A `plan` (technique=adaptive) lists other ways to the answer -- each a route with
its predicted latency and accuracy -- for the stage to choose among when the
route's first target is down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

POLICIES = ("ordered", "hedge")
HOPS = ("lean", "grpc")  # how a stage calls the next one (harness.pipeline.node.lean)
LEAN_PORT_OFFSET = 1000  # a stage's lean port: its gRPC port + this
DETECTORS = ("probe", "passive")


@dataclass
class Health:
    period_ms: float = 50.0
    timeout_ms: float = 50.0
    failures: int = 1  # consecutive failed probes before a target is marked down
    detector: str = "probe"  # probe | passive
    idle_ms: float = 250.0  # passive: probe a target with no answered call for this long
    suspect_min_ms: float = 25.0  # passive: never suspect a call younger than this

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"route.health.detector={self.detector!r}: one of "
                             f"{', '.join(DETECTORS)}")


@dataclass
class Action:
    """One way to an answer when the route's first target is down (a replica, a skip
    connection, an early exit ...), and what the technique predicted it gives."""

    name: str
    route: Route
    predicted_ms: float  # end-to-end latency of a request served this way
    accuracy: float  # the model card's accuracy of answers served this way
    # a re-partitioning: before its route is used, the stage at `target` loads `path` (a
    # merged partition); it is not undone when the failed node returns
    load: dict[str, str] | None = None


@dataclass
class Plan:
    slo_ms: float
    actions: list[Action] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: Any) -> Plan | None:
        if not data:
            return None
        try:
            return cls(float(data["slo_ms"]), [
                Action(str(a["name"]), Route.from_json(a["route"]),  # type: ignore[arg-type]
                       float(a["predicted_ms"]), float(a["accuracy"]), a.get("load"))
                for a in data["actions"]])
        except (KeyError, TypeError) as e:
            raise ValueError(f"route.plan: {e!r}") from None

    def to_json(self) -> dict:
        return {"slo_ms": self.slo_ms,
                "actions": [{"name": a.name, "route": a.route.to_json(),
                             "predicted_ms": a.predicted_ms, "accuracy": a.accuracy,
                             "load": a.load}
                            for a in self.actions]}


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
    plan: Plan | None = None  # what to do instead when targets[0] is down (adaptive)

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
                 "health", "zeros", "fallback", "degraded", "plan"}
        extra = set(data) - known
        if extra:
            raise ValueError(f"route.{sorted(extra)[0]}: unknown key")
        health = data.get("health")
        return cls(model=model, targets=targets, inputs=inputs, policy=policy,
                   attempt_timeout_ms=float(data.get("attempt_timeout_ms", 0.0)),
                   hedge_ms=float(data.get("hedge_ms", 0.0)),
                   health=_health(health),
                   zeros={k: [int(d) for d in v] for k, v in (data.get("zeros") or {}).items()},
                   fallback=cls.from_json(data.get("fallback")),
                   degraded=bool(data.get("degraded", False)),
                   plan=Plan.from_json(data.get("plan")))

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
        if self.plan:
            out["plan"] = self.plan.to_json()
        return out

    def all_targets(self) -> list[str]:
        out = self.targets + (self.fallback.all_targets() if self.fallback else [])
        for a in self.plan.actions if self.plan else []:
            out += [t for t in a.route.all_targets() if t not in out]
        return out


def _health(data: Any) -> Health | None:
    if not data:
        return None
    if not isinstance(data, dict):
        raise ValueError("route.health: must be an object")
    try:
        return Health(**data)
    except TypeError as e:
        raise ValueError(f"route.health: {e}") from None
