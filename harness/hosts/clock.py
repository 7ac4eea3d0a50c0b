"""Each host's clock offset to the coordinator's, NTP-style, over the control channel.

The clocks are monotonic ones, which every instant of a run is stamped with (a stage's
detection, a sensor's schedule): between real machines the offset is their boot times'
difference, and only its uncertainty says how well events line up.

An exchange: the coordinator notes t0, asks the host for its clock (t1), notes t2. If
the request and the answer took equally long, the host's clock was read at
(t0 + t2) / 2 on ours, so offset = t1 - (t0 + t2) / 2; whatever the two legs really
took, the truth lies within +-(t2 - t0) / 2 of that (the host read its clock somewhere
between t0 and t2). Of several exchanges the one with the shortest round trip has the
tightest bound: it is the estimate, and its half round trip the uncertainty.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Offset:
    offset_ms: float  # host clock minus coordinator clock
    uncertainty_ms: float  # the true offset is within +- this
    rtt_ms: float  # of the exchange it comes from
    exchanges: int

    def to_coordinator(self, host_t: float) -> float:
        """A host timestamp (s, the host's clock) on the coordinator's clock."""
        return host_t - self.offset_ms / 1000

    def as_dict(self) -> dict:
        return asdict(self)


def measure(remote_now: Callable[[], float], n: int = 8,
            local_now: Callable[[], float] = time.monotonic) -> Offset:
    """Estimate the offset of the clock `remote_now` reads (seconds) from `local_now`."""
    if n < 1:
        raise ValueError("n must be >= 1")
    best: tuple[float, float] | None = None  # (rtt, offset)
    for _ in range(n):
        t0 = local_now()
        t1 = remote_now()
        t2 = local_now()
        rtt = t2 - t0
        if best is None or rtt < best[0]:
            best = (rtt, t1 - (t0 + t2) / 2)
    assert best is not None
    rtt, off = best
    return Offset(off * 1000, rtt * 1000 / 2, rtt * 1000, n)


def drift(before: Offset, after: Offset) -> dict:
    """Offsets measured before and after the run, and the widest uncertainty that covers
    the whole run (either measurement's bound plus what the clock moved in between)."""
    moved = abs(after.offset_ms - before.offset_ms)
    return {"before": before.as_dict(), "after": after.as_dict(), "moved_ms": moved,
            "uncertainty_ms": max(before.uncertainty_ms, after.uncertainty_ms) + moved}
