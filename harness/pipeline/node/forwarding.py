"""Inside a stage: how it sends a request on along its route -- the forwarding policies.

The route names its policy (routing.py); the stage builds one `Policy` for each route
it is given, so whatever a policy learns about a route (a plan's decisions) goes with
it when the route changes. A policy decides which way a request goes; the calls
themselves -- channels, the lean hop, attempts watched by the health checker -- are
calls.py's.

`ordered`, the pipeline's own: the route's targets one after another, healthy ones
first when the route is watched, each attempt within `attempt_timeout_ms` and the
caller's deadline (a route with several targets and health is warm or cold failover).
A technique's policy (`harness/techniques/<name>/node/`) subclasses `Policy`, usually
builds on `ordered`, and registers itself (policies.register).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import grpc

from harness.pipeline.node import policies
from harness.pipeline.routing import ORDERED, Route


@dataclass
class Sent:
    """What sending a request on came to."""

    resp: Any  # the next stage's answer, or None
    err: Any  # the last error (None: no time was left to try)
    route: Route  # the route an error is reported against (a plan's: the one it chose)
    degraded: bool = False  # answered another way than the route says (a fallback)


def budget(route: Route, deadline: float | None) -> Callable[[], float | None]:
    """Seconds the next attempt may take: the route's attempt timeout within what is left
    of the deadline (None: no limit)."""
    attempt = route.attempt_timeout_ms / 1000 if route.attempt_timeout_ms else None

    def timeout() -> float | None:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if attempt is None:
            return left
        return attempt if left is None else min(attempt, left)

    return timeout


class Policy:
    """How a stage sends requests on along one route. `Options`: the route's settings for
    this policy on the wire (None: it has none)."""

    name: ClassVar[str] = ""
    Options: ClassVar[Any] = None

    def __init__(self, stage: Any, route: Route) -> None:
        self.stage, self.route = stage, route
        self.calls, self.health = stage.calls, stage.health
        self.others: dict[int, Policy] = {}  # other routes sent along (fallback, actions)

    def send(self, request, outputs: dict, deadline: float | None) -> Sent:
        """Send `request` (with this stage's `outputs`) on, within `deadline`."""
        return self.ordered(self.route, request, outputs, deadline)

    def ordered(self, route: Route, request, outputs: dict, deadline: float | None,
                skip_down: bool = False) -> Sent:
        """The route's targets in turn (healthy first when watched; `skip_down`: none marked
        down) until one answers."""
        msg = self.stage.next_request(request, outputs, route)
        targets = self.health.order(route.targets) if route.health else list(route.targets)
        if skip_down and route.health:
            targets = [t for t in targets if t not in self.health.down]
        timeout = budget(route, deadline)
        last = None
        for n, target in enumerate(targets):
            t = timeout()
            if t is not None and t <= 0:
                break
            try:
                resp = self.calls.attempt(target, msg, t, watch=route.health is not None)
                if n:
                    with self.calls.lock:
                        self.calls.stats["failovers"] += 1
                return Sent(resp, None, route)
            except grpc.RpcError as e:
                last = e
        return Sent(None, last, route)

    def via(self, route: Route, request, outputs: dict, deadline: float | None) -> Sent:
        """Along another route (a fallback, an action of a plan), by that route's policy."""
        other = self.others.get(id(route))
        if other is None or other.route is not route:  # once per route (what it learns stays)
            other = self.others.setdefault(id(route),
                                           policies.find(route.policy)(self.stage, route))
        return other.send(request, outputs, deadline)


@policies.register
class Ordered(Policy):
    name = ORDERED
