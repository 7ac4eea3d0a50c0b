"""Inside a stage: health checks of its route's targets, and the events they produce.

The stage probes every target (KServe ServerLive) on the route's period and
skips targets marked down; transitions are appended to the stage's events
file, which the harness merges into events.parquet.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from harness.pipeline.routing import Route


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
