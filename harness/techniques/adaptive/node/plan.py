"""Inside a stage: adaptive's `plan` policy -- when the route's first target is down,
choose another way to the answer.

A route's plan (built by technique=adaptive) lists the ways the deployment allows
-- a replica, the skip connection, an early exit, a re-partitioning -- each with the
latency the technique predicted for it and the accuracy the model card gives it. The
stage chooses at the moment it finds the target down (or suspect), by a stated
objective: the most accurate action whose predicted latency meets the SLO and whose
targets are not down; if none meets the SLO, the fastest one that is up. Each decision
is recorded (`decide`: what was chosen, every candidate, how long deciding took) and
kept until the set of down targets changes. An action that re-partitions the model (a
neighbour loads a merged partition first) is made once and kept: the old cut no longer
exists when the failed node returns. A new route (SetRoute) starts with no decisions.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import grpc

from harness.pipeline.node.forwarding import Policy, Sent
from harness.pipeline.node.policies import register
from harness.pipeline.routing import Route


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
    """The route's settings for `plan` (on the wire: `plan`, {slo_ms, actions})."""

    slo_ms: float
    actions: list[Action] = field(default_factory=list)

    KEYS = ("plan",)

    @classmethod
    def from_json(cls, data: dict) -> Plan:
        plan: Any = data.get("plan")
        try:
            return cls(float(plan["slo_ms"]), [
                Action(str(a["name"]), Route.from_json(a["route"]),  # type: ignore[arg-type]
                       float(a["predicted_ms"]), float(a["accuracy"]), a.get("load"))
                for a in plan["actions"]])
        except (KeyError, TypeError) as e:
            raise ValueError(f"route.plan: {e!r}") from None

    def to_json(self) -> dict:
        return {"plan": {"slo_ms": self.slo_ms,
                         "actions": [{"name": a.name, "route": a.route.to_json(),
                                      "predicted_ms": a.predicted_ms, "accuracy": a.accuracy,
                                      "load": a.load}
                                     for a in self.actions]}}

    def all_targets(self) -> list[str]:
        out: list[str] = []
        for a in self.actions:
            out += [t for t in a.route.all_targets() if t not in out]
        return out


def choose(plan: Plan, down: set[str]) -> tuple[Action | None, list[dict]]:
    """The action to take with `down` targets down, and every candidate as judged."""
    rows = []
    for a in plan.actions:
        up = any(t not in down for t in a.route.targets)
        rows.append({"action": a.name, "predicted_ms": round(a.predicted_ms, 3),
                     "accuracy": a.accuracy, "meets_slo": a.predicted_ms <= plan.slo_ms,
                     "up": up})
    ok = [(a, r) for a, r in zip(plan.actions, rows, strict=True) if r["up"]]
    within = [(a, r) for a, r in ok if r["meets_slo"]]
    if within:
        best = max(within, key=lambda ar: (ar[0].accuracy, -ar[0].predicted_ms))[0]
    elif ok:
        best = min(ok, key=lambda ar: ar[0].predicted_ms)[0]
    else:
        best = None
    return best, rows


class Decider:
    """A stage's decisions, one per set of down targets, each recorded once."""

    def __init__(self, events, loader=None) -> None:
        self.events = events
        self.loader = loader  # (target, path) -> {"ok", "error"?, "load_ms"?}
        self.lock = threading.Lock()
        # decisions about its route's plan (a new route gets a new policy, and a new Decider)
        self.made: dict[frozenset[str], Action | None] = {}
        self.kept: Action | None = None  # a re-partitioning made

    def route_for(self, route: Route, down: set[str]) -> Route:
        """`route` itself while its first target is up (or it has no plan); else the
        route of the chosen action (`route` again if no action has a target up)."""
        plan = route.options if isinstance(route.options, Plan) else None
        if plan is not None and self.kept is not None:
            return self.kept.route
        if plan is None or route.targets[0] not in down:
            return route
        key = frozenset(t for t in down if t in route.all_targets())
        with self.lock:
            if key not in self.made:
                t0 = time.perf_counter()
                action, rows = choose(plan, set(down))
                decide_ms = (time.perf_counter() - t0) * 1000
                self.made[key] = action
                self.events("decide", route.targets[0],
                            action=action.name if action else None, slo_ms=plan.slo_ms,
                            decide_ms=round(decide_ms, 4), candidates=rows,
                            down=sorted(key))
                if action is not None and action.load is not None:
                    self._load(plan, action, key, route.targets[0])
            action = self.made[key]
        return route if action is None else action.route

    def _load(self, plan: Plan, action: Action, key: frozenset[str], target: str) -> None:
        """Have the neighbour load the merged partition (lock held: callers wait for the
        new cut rather than send the old one's tensors); on failure, decide again among
        the actions that load nothing, and record that decision too."""
        assert action.load is not None
        reply = self.loader(action.load["target"], action.load["path"]) if self.loader \
            else {"ok": False, "error": "this stage cannot reach a loader"}
        self.events("repartition", action.load["target"], action=action.name,
                    ok=bool(reply.get("ok")), load_ms=reply.get("load_ms"),
                    error=reply.get("error"))
        if reply.get("ok"):
            self.kept = action
            return
        rest = Plan(plan.slo_ms, [a for a in plan.actions if a.load is None])
        fallback, rows = choose(rest, set(key))
        self.made[key] = fallback
        self.events("decide", target, action=fallback.name if fallback else None,
                    slo_ms=plan.slo_ms, decide_ms=None, candidates=rows, down=sorted(key),
                    after_failed=action.name)


def load_at(target: str, path: str) -> dict:
    """LoadModel on another stage (or this one) over the network, as a controller would."""
    from harness.pipeline.client import control_call

    try:
        return control_call(target, "LoadModel", {"path": path}, timeout=10)
    except grpc.RpcError as e:
        return {"ok": False, "error": f"{e.code().name}: {e.details()}"}


@register
class PlanPolicy(Policy):
    """Along the route while its first target is up; along the chosen action's route
    while it is down or suspect (a suspect's calls already go elsewhere)."""

    name = "plan"
    Options = Plan

    def __init__(self, stage: Any, route: Route) -> None:
        super().__init__(stage, route)
        self.decider = Decider(stage.events, load_at)

    def decide(self) -> Route:
        return self.decider.route_for(self.route, self.health.down | self.health.suspected)

    def send(self, request, outputs: dict, deadline: float | None) -> Sent:
        planned = self.route
        route = self.decide()
        sent = self._along(route, request, outputs, deadline)
        if sent.resp is None and route is planned:
            route = self.decide()  # found down (or suspect) by this call?
            if route is not planned:
                again = self._along(route, request, outputs, deadline)
                sent = Sent(again.resp, again.err or sent.err, route, again.degraded)
        return sent

    def _along(self, route: Route, request, outputs: dict, deadline: float | None) -> Sent:
        if route is self.route:
            return self.ordered(route, request, outputs, deadline)
        return self.via(route, request, outputs, deadline)
