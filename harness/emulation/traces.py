"""Trace-driven bandwidth: Mahimahi packet-delivery traces turned into htb rate steps.

A Mahimahi trace has one line per 1500-byte delivery opportunity, in ms from
the start, repeated when several fit in one ms; it loops at its end. The link
follows it at `window_ms` granularity: each window's opportunities become that
window's rate.

An outage (windows without an opportunity) carries about one frame in all. htb
cannot hold a class at 0 and lets the head frame go whenever the class has
tokens, charging it at the class's rate: at a fixed 1 kbit/s one 1514-byte frame
is 12 s of debt, and the link stays dead that long after the outage ends. So
each outage window gets the rate at which one frame takes the rest of the
outage (`applied_rates`): the debt ends with the outage (within a window).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from harness.core.config import ConfigError

MTU_BITS = 1500 * 8


def load_mahimahi(path: str | Path, key: str = "trace") -> list[int]:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"{key}={str(path)!r}: cannot read trace ({e.strerror})") from None
    out = []
    for i, line in enumerate(text.split()):
        try:
            v = int(line)
        except ValueError:
            raise ConfigError(f"{key}={str(path)!r}: line {i + 1} is not an integer ms "
                              f"timestamp ({line[:20]!r})") from None
        if v < 0 or (out and v < out[-1]):
            raise ConfigError(f"{key}={str(path)!r}: line {i + 1}: timestamps must be "
                              f"non-negative and non-decreasing")
        out.append(v)
    if not out:
        raise ConfigError(f"{key}={str(path)!r}: empty trace")
    return out


def rates_mbit(stamps_ms: list[int], window_ms: int = 100) -> list[float]:
    """Rate of each window over one period of the trace (its last timestamp, at least 1 ms).

    A window without delivery opportunities (an outage) is 0.0: a rate (`applied_rates`
    says which htb is given), never "no cap"."""
    period = max(stamps_ms[-1], 1)
    n = max(1, -(-period // window_ms))
    counts = [0] * n
    for t in stamps_ms:
        counts[min(t // window_ms, n - 1)] += 1
    return [c * MTU_BITS / (window_ms / 1000) / 1e6 for c in counts]


def applied_rates(rates: list[float], window_ms: int = 100) -> list[float]:
    """The rate to apply in each window: the trace's, and in an outage (a run of 0.0
    windows, looping) the rate at which one 1500-byte frame takes the rest of it."""
    n, window_s = len(rates), window_ms / 1000
    out = list(rates)
    last = max((i for i, r in enumerate(rates) if r > 0), default=n - 1)
    run = 0
    for j in range(last + n, last, -1):  # backwards once round, from the last open window
        i = j % n
        run = run + 1 if rates[i] <= 0 else 0
        if run:
            out[i] = MTU_BITS / (min(run, n) * window_s) / 1e6
    return out


class TraceFollower(threading.Thread):
    """Applies a rate per window, looping, until stopped."""

    def __init__(self, name: str, rates: list[float], window_ms: int,
                 apply: Callable[[float], None]) -> None:
        super().__init__(name=f"trace-{name}", daemon=True)
        self.rates, self.window_s, self.apply = rates, window_ms / 1000, apply
        self.stopped = threading.Event()
        self.error: Exception | None = None
        self.t0 = 0.0

    def start_now(self) -> None:
        """Apply the first window's rate before returning, then follow in the background."""
        self.t0 = time.monotonic()
        self.apply(self.rates[0])
        self.start()

    def run(self) -> None:
        t0 = self.t0
        i = 1
        self.stopped.wait(max(0.0, t0 + self.window_s - time.monotonic()))
        while not self.stopped.is_set():
            try:
                self.apply(self.rates[i % len(self.rates)])
            except Exception as e:  # surfaced by the emulation as an invalid run
                self.error = e
                return
            i += 1
            self.stopped.wait(max(0.0, t0 + i * self.window_s - time.monotonic()))

    def stop(self) -> None:
        self.stopped.set()
