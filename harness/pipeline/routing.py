"""Where a stage sends its result, and how it watches where it sends.

A route names the next model, its targets (host:port, in order of preference), the
tensors the next model takes, and the forwarding policy that sends along it, by name:
`ordered`, the pipeline's own (the targets one after another, each attempt within
`attempt_timeout_ms`), or a technique's -- `hedge` (failover's active-active),
`fallback` (structural), `plan` (adaptive) -- kept with the technique in
`harness/techniques/<name>/node/` and found by name (harness/pipeline/node/policies.py).
A policy's own settings ride in the same JSON object (`hedge_ms`, `fallback`, `plan`),
read and written by its `Options` and held in `options`.

With `health` set, the stage watches every target of the route (a policy's too: a
fallback's, a plan's actions') and skips targets marked down; transitions are recorded
as events. How it watches is the `detector`: `probe` asks every target (KServe
ServerLive) on a period; `passive` learns from the calls it makes anyway (a target that
refuses a call, or takes longer than its own recent latency allows, is marked down) and
probes only targets that are down or idle. `zeros` feed the next model zeros for tensors
this route lacks (a skip connection around a lost stage), and `degraded` marks the
answers that came this way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.pipeline.node import policies

HOPS = ("lean", "grpc")  # how a stage calls the next one (harness.pipeline.node.lean)
LEAN_PORT_OFFSET = 1000  # a stage's lean port: its gRPC port + this
DETECTORS = ("probe", "passive")
ORDERED = "ordered"  # the pipeline's own policy (harness.pipeline.node.forwarding)
# the keys every route has; any other key belongs to its policy's Options
COMMON = ("model", "targets", "inputs", "policy", "attempt_timeout_ms", "health", "zeros",
          "degraded")


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
class Route:
    model: str = ""
    targets: list[str] = field(default_factory=list)  # host:port, in order of preference
    inputs: list[str] = field(default_factory=list)  # tensors the next model takes
    policy: str = ORDERED  # how the stage sends along it (a name in policies' registry)
    attempt_timeout_ms: float = 0.0  # 0 = the caller's whole deadline
    health: Health | None = None
    zeros: dict[str, list[int]] = field(default_factory=dict)  # missing tensors -> shape
    degraded: bool = False  # answers through this route are marked degraded
    # the policy's own settings (its Options: `KEYS`, `from_json`, `to_json`,
    # `all_targets`); None for a policy without any
    options: Any = None

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
        policy = data.get("policy", ORDERED)
        if not isinstance(policy, str):
            raise ValueError(f"route.policy={policy!r}: must be a policy's name")
        kind = policies.find(policy)
        own = kind.Options.KEYS if kind.Options is not None else ()
        extra = set(data) - set(COMMON) - set(own)
        if extra:
            raise ValueError(f"route.{sorted(extra)[0]}: unknown key")
        health = data.get("health")
        return cls(model=model, targets=targets, inputs=inputs, policy=policy,
                   attempt_timeout_ms=float(data.get("attempt_timeout_ms", 0.0)),
                   health=_health(health),
                   zeros={k: [int(d) for d in v] for k, v in (data.get("zeros") or {}).items()},
                   degraded=bool(data.get("degraded", False)),
                   options=None if kind.Options is None else kind.Options.from_json(
                       {k: data[k] for k in own if k in data}))

    def to_json(self) -> dict:
        out: dict[str, Any] = {"model": self.model, "targets": self.targets,
                               "inputs": self.inputs, "policy": self.policy,
                               "attempt_timeout_ms": self.attempt_timeout_ms,
                               "zeros": self.zeros, "degraded": self.degraded}
        if self.health:
            out["health"] = self.health.__dict__
        if self.options is not None:
            out.update(self.options.to_json())
        return out

    def all_targets(self) -> list[str]:
        """Every target a stage sending along this route may call: its own, then its
        policy's (a fallback's, a plan's actions'), each once."""
        out = list(self.targets)
        for t in self.options.all_targets() if self.options is not None else []:
            if t not in out:
                out.append(t)
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
