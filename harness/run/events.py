"""The run's event log: what happened when (faults, detections, stages ready), in one table.

`t_s` counts from run start (`t0`, set once the first request's time is known),
on CLOCK_MONOTONIC, which every namespace shares, so events recorded by
processes inside nodes merge into the same timeline.
"""

from __future__ import annotations

import json
import logging
import threading
import time

log = logging.getLogger("harness")
EVENT_COLUMNS = ["t_s", "kind", "target", "detail"]


class EventLog:
    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.events: list[tuple[float, str, str, str]] = []
        self.lock = threading.Lock()

    def record(self, kind: str, target: str, detail: dict | None = None,
               at: float | None = None) -> None:
        """`at` (time.monotonic) is when the event began; default now."""
        t = time.monotonic() if at is None else at
        text = json.dumps(detail or {}, sort_keys=True, default=str)
        with self.lock:
            self.events.append((t, kind, target, text))
        log.info("%-20s %s %s", kind, target, text)

    @property
    def rows(self) -> list[dict]:
        with self.lock:
            return [{"t_s": round(t - self.t0, 6), "kind": k, "target": tg, "detail": d}
                    for t, k, tg, d in sorted(self.events, key=lambda e: e[0])]
