"""Trace-driven bandwidth: Mahimahi packet-delivery traces turned into htb rate steps.

A Mahimahi trace has one line per 1500-byte delivery opportunity, in ms from
the start, repeated when several fit in one ms; it loops at its end. The link
follows it at `window_ms` granularity: each window's opportunities become that
window's rate (an outage becomes htb's minimum rate).
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
    """Rate of each window over one period of the trace (its last timestamp, at least 1 ms)."""
    period = max(stamps_ms[-1], 1)
    n = max(1, -(-period // window_ms))
    counts = [0] * n
    for t in stamps_ms:
        counts[min(t // window_ms, n - 1)] += 1
    return [c * MTU_BITS / (window_ms / 1000) / 1e6 for c in counts]


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
