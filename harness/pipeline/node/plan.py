"""Inside a stage: when its route's first target is down, choose another way to the answer.

A route's `plan` (built by technique=adaptive) lists the ways the deployment allows
-- a replica, the skip connection, an early exit -- each with the latency the
technique predicted for it and the accuracy the model card gives it. The stage
chooses at the moment it finds the target down, by a stated objective: the most
accurate action whose predicted latency meets the SLO and whose targets are not
down; if none meets the SLO, the fastest one that is up. Each decision is recorded
(`decide`: what was chosen, every candidate, how long deciding took) and kept
until the set of down targets changes. An action that re-partitions the model (a
neighbour loads a merged partition first) is made once and kept: the old cut no
longer exists when the failed node returns.
"""

from __future__ import annotations

import threading
import time

from harness.pipeline.routing import Action, Plan, Route


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
        # decisions about the current route's plan (reset when the route changes)
        self.made: dict[frozenset[str], Action | None] = {}
        self.kept: Action | None = None  # a re-partitioning made

    def reset(self) -> None:
        with self.lock:
            self.made, self.kept = {}, None

    def route_for(self, route: Route, down: set[str]) -> Route:
        """`route` itself while its first target is up (or it has no plan); else the
        route of the chosen action (`route` again if no action has a target up)."""
        plan = route.plan
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
