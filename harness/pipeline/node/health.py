"""Inside a stage: whether its route's targets are alive, and the events that says.

Two detectors (the route's `health.detector`):

* `probe`: every target gets a KServe ServerLive every `period_ms`; one slower
  than `timeout_ms` (`failures` in a row) marks it down. Simple, and it costs a
  call per target per period whether or not anything is wrong.
* `passive`: the calls the stage makes anyway are the signal. A call the target
  refuses (UNAVAILABLE that did not come from further down the pipeline) marks it
  down at once. A call still unanswered after the target's own recent latency
  allows, as TCP's retransmission timer judges it (RFC 6298: smoothed latency + 4 x
  its variation, at least `suspect_min_ms`), makes it *suspect*: the call moves to
  the next target at once and new calls avoid it, and a ServerLive probe decides --
  down if it fails, cleared if it answers (silence can also be a later hop's, which
  must not be blamed on this one). Silent crashes, hangs and partitions send no
  reset, only silence. A target that answered a call within `idle_ms` is not
  probed at all; probes go only to targets that are down or suspect, and to idle
  ones (a warm replica, so a dead one is known before it is needed).

Transitions are appended to the stage's events file, which the harness merges
into events.parquet; each `detect` says which signal fired.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from harness.core import hostclock
from harness.pipeline.routing import Health, Route


class EventSink:
    """Technique events of a stage as JSON lines (the coordinator's monotonic time,
    `harness.core.hostclock`; merged by the harness)."""

    def __init__(self, path: str | None, hop: str) -> None:
        self.f = open(path, "a", buffering=1) if path else None
        self.hop = hop
        self.lock = threading.Lock()

    def __call__(self, kind: str, target: str, **detail: Any) -> None:
        if self.f is None:
            return
        line = json.dumps({"t": hostclock.now(), "kind": kind, "target": target,
                           "by": self.hop, **detail})
        with self.lock:
            self.f.write(line + "\n")


class Latency:
    """A target's call latency as TCP's retransmission timer tracks a round trip."""

    def __init__(self) -> None:
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.last_ok = 0.0  # monotonic time of the last answered call

    def observe(self, seconds: float) -> None:
        if self.srtt is None:
            self.srtt, self.rttvar = seconds, seconds / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - seconds)
            self.srtt = 0.875 * self.srtt + 0.125 * seconds
        self.last_ok = time.monotonic()

    def limit(self, floor_s: float) -> float | None:
        """How long a call may stay unanswered before the target is suspect (None: no
        answer seen yet, so nothing to judge by)."""
        if self.srtt is None:
            return None
        return max(floor_s, self.srtt + 4 * self.rttvar)


class HealthChecker(threading.Thread):
    """Watches targets; `down` holds the targets marked down."""

    def __init__(self, probe, events: EventSink) -> None:
        super().__init__(name="health", daemon=True)
        self.probe = probe  # (target, timeout_s) -> bool
        self.events = events
        self.route: Route | None = None
        self.down: set[str] = set()
        self.seen_up: set[str] = set()  # a target never seen up is starting, not failing
        self.fails: dict[str, int] = {}
        self.latency: dict[str, Latency] = {}
        self.last_probe: dict[str, float] = {}
        self.suspected: set[str] = set()  # passive: silent, a probe to decide
        self.silence: dict[str, tuple[float, dict]] = {}  # when and how it fell silent
        self.epoch: dict[str, int] = {}  # times marked down: a probe older than that is stale
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.wake = threading.Event()  # a suspect to probe now

    def set_route(self, route: Route | None) -> None:
        self.route = route

    @property
    def passive(self) -> bool:
        route = self.route
        return route is not None and route.health is not None \
            and route.health.detector == "passive"

    # -- what the stage's own calls say (passive) ------------------------------------------
    def suspect_after(self, target: str) -> float | None:
        """Seconds a call to `target` may stay unanswered (None: do not judge it)."""
        route = self.route
        if not self.passive or route is None or route.health is None:
            return None
        lat = self.latency.get(target)
        return lat.limit(route.health.suspect_min_ms / 1000) if lat else None

    def answered(self, target: str, seconds: float) -> None:
        with self.lock:
            self.latency.setdefault(target, Latency()).observe(seconds)
        if not self.passive:  # the probe detector decides alone, as it always has
            return
        with self.lock:
            self.seen_up.add(target)
            self.fails[target] = 0
            self.suspected.discard(target)
        if target in self.down:
            self._up(target, "call")

    def refused(self, target: str, **detail: Any) -> None:
        """The target itself refused a call: down now, not after a probe."""
        self._down(target, "refused", **detail)

    def silent(self, target: str, **detail: Any) -> None:
        """A call outlasted the target's limit: suspect until a probe says which."""
        with self.lock:
            if target in self.down or target not in self.seen_up:
                return
            self.suspected.add(target)
            self.silence[target] = (time.monotonic(), detail)
        self.wake.set()

    def _down(self, target: str, signal: str, **detail: Any) -> None:
        with self.lock:
            if target in self.down or target not in self.seen_up:
                return
            self.down.add(target)
            self.suspected.discard(target)
            self.epoch[target] = self.epoch.get(target, 0) + 1
        self.events("detect", target, signal=signal, **detail)

    def _up(self, target: str, signal: str, epoch: int | None = None) -> None:
        with self.lock:
            if target not in self.down:
                return
            if epoch is not None and self.epoch.get(target, 0) != epoch:
                return  # marked down while the probe was out: its answer is older news
            self.down.discard(target)
            self.latency.pop(target, None)  # a new connection: learn its latency afresh
        self.events("detect.up", target, signal=signal)

    # -- probes ----------------------------------------------------------------------------
    def _due(self, target: str, h: Health, now: float) -> bool:
        if h.detector == "probe" or target in self.down or target in self.suspected:
            return True
        lat = self.latency.get(target)
        last = max(lat.last_ok if lat else 0.0, self.last_probe.get(target, 0.0))
        return now - last >= h.idle_ms / 1000

    def _probed(self, target: str, ok: bool, h: Health, epoch: int) -> None:
        if ok:
            with self.lock:
                self.fails[target] = 0
                self.seen_up.add(target)
                self.suspected.discard(target)
            self._up(target, "probe", epoch)
            return
        self.fails[target] = self.fails.get(target, 0) + 1
        if target in self.suspected:  # the silence is confirmed: since when it counts
            t, detail = self.silence.get(target, (time.monotonic(), {}))
            self._down(target, "silence", suspected_ms=round((time.monotonic() - t) * 1000, 2),
                       **detail)
        elif self.fails[target] >= h.failures:
            self._down(target, "probe")

    def run(self) -> None:
        while not self.stopped.is_set():
            route = self.route
            if route is None or route.health is None:
                self.stopped.wait(0.1)
                continue
            h = route.health
            t0 = time.monotonic()
            self.wake.clear()
            for target in route.all_targets():
                if not self._due(target, h, time.monotonic()):
                    continue
                self.last_probe[target] = time.monotonic()
                epoch = self.epoch.get(target, 0)
                self._probed(target, self.probe(target, h.timeout_ms / 1000), h, epoch)
            if h.detector == "probe":
                self.wake.wait(max(0.0, t0 + h.period_ms / 1000 - time.monotonic()))
            else:  # sleep until a probe is due (calls and suspects wake it): while all
                self.wake.wait(self._until_due(route.all_targets(), h))  # answer, rarely

    def _until_due(self, targets: list[str], h: Health) -> float:
        """Passive: seconds until the next probe is due (down or suspect targets: every
        period; others: idle_ms after their last answer or probe); at least 5 ms."""
        now, due = time.monotonic(), []
        for t in targets:
            if t in self.down or t in self.suspected:
                due.append(self.last_probe.get(t, 0.0) + h.period_ms / 1000)
            else:
                lat = self.latency.get(t)
                last = max(lat.last_ok if lat else 0.0, self.last_probe.get(t, 0.0))
                due.append(last + h.idle_ms / 1000)
        return max(0.005, min(due, default=now + h.idle_ms / 1000) - now)

    def order(self, targets: list[str]) -> list[str]:
        """Healthy targets first, in route order; suspect ones next; targets marked down
        last."""
        rank = {t: 2 if t in self.down else 1 if t in self.suspected else 0 for t in targets}
        return sorted(targets, key=lambda t: rank[t])
