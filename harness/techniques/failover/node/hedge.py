"""Inside a stage: hedged requests (failover's `mode: active_active`), the `hedge` policy.

The stage asks the route's first target, then the next ones -- at once, or `hedge_ms`
later while no answer has come -- and takes the first answer; the calls still out are
cancelled. The next target is asked at once when every call out so far has failed (a
refused primary): waiting out `hedge_ms` then would only delay the answer. Targets
marked down by the health checker are asked last.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from harness.pipeline.node.forwarding import Policy, Sent, budget
from harness.pipeline.node.policies import register


@dataclass
class Hedge:
    """The route's settings for `hedge` (on the wire: `hedge_ms` beside the route's keys)."""

    hedge_ms: float = 0.0  # delay before the next target is also asked (0: at once)

    KEYS = ("hedge_ms",)

    @classmethod
    def from_json(cls, data: dict) -> Hedge:
        try:
            return cls(float(data.get("hedge_ms", 0.0)))
        except (TypeError, ValueError):
            raise ValueError(f"route.hedge_ms={data.get('hedge_ms')!r}: must be a number"
                             ) from None

    def to_json(self) -> dict:
        return {"hedge_ms": self.hedge_ms}

    def all_targets(self) -> list[str]:
        return []


@register
class HedgePolicy(Policy):
    name = "hedge"
    Options = Hedge

    def send(self, request, outputs: dict, deadline: float | None) -> Sent:
        route = self.route
        msg = self.stage.next_request(request, outputs, route)
        targets = self.health.order(route.targets) if route.health else list(route.targets)
        hedge_s = (route.options.hedge_ms if route.options is not None else 0.0) / 1000
        resp, err = self._hedge(msg, targets, hedge_s, budget(route, deadline))
        return Sent(resp, err, route)

    def _hedge(self, msg, targets: list[str], hedge_s: float, timeout):
        """Ask the first target, then the next ones (at once or after hedge_s); first wins."""
        lock = threading.Lock()
        # set while no call is out: an answer came, or every call sent so far failed
        idle = threading.Event()
        idle.set()
        state: dict[str, Any] = {"resp": None, "err": None, "failed": 0, "launched": 0}
        futs = []

        def finished(f) -> None:
            with lock:
                if f.cancelled():
                    return
                if f.exception() is None:
                    if state["resp"] is None:
                        state["resp"] = f.result()
                    idle.set()
                else:
                    state["err"] = f.exception()
                    state["failed"] += 1
                    if state["failed"] == state["launched"]:
                        idle.set()

        for n, target in enumerate(targets):
            if n:
                idle.wait(hedge_s)
                if state["resp"] is not None:
                    break
            t = timeout()
            if t is not None and t <= 0:
                break
            with lock:
                state["launched"] += 1
                idle.clear()
            f = self.calls.stub(target).ModelInfer.future(msg, timeout=t)
            futs.append(f)
            f.add_done_callback(finished)
        idle.wait(timeout())
        for f in futs:
            f.cancel()
        return state["resp"], state["err"]
