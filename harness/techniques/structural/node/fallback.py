"""Inside a stage: structural resilience's `fallback` policy.

The route's targets are tried in order, skipping any the health checker has marked
down (a fallback serves meanwhile: no call waits on a target known to be gone); when
none answers, the request goes along the route's `fallback` instead -- the skip
connection straight to the stage after the lost one, with zeros for what it would
have produced, or the model's early exit beside this stage -- and the answer is marked
degraded. When the target answers again, the full path is used again.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.pipeline.node.forwarding import Policy, Sent
from harness.pipeline.node.policies import register
from harness.pipeline.routing import Route


@dataclass
class Fallback:
    """The route's settings for `fallback` (on the wire: `fallback`, a route)."""

    route: Route

    KEYS = ("fallback",)

    @classmethod
    def from_json(cls, data: dict) -> Fallback:
        route = Route.from_json(data.get("fallback"))
        if route is None:
            raise ValueError("route.fallback: the route to fall back to is missing")
        return cls(route)

    def to_json(self) -> dict:
        return {"fallback": self.route.to_json()}

    def all_targets(self) -> list[str]:
        return self.route.all_targets()


@register
class FallbackPolicy(Policy):
    name = "fallback"
    Options = Fallback

    def send(self, request, outputs: dict, deadline: float | None) -> Sent:
        sent = self.ordered(self.route, request, outputs, deadline, skip_down=True)
        if sent.resp is not None or self.route.options is None:
            return sent
        other = self.via(self.route.options.route, request, outputs, deadline)
        return Sent(other.resp, other.err or sent.err, self.route,
                    degraded=other.resp is not None)
