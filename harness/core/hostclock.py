"""The clock every instant that leaves a process is stamped with (stage events, a stage's
ready instants, a sensor's schedule against t0): this machine's monotonic clock, shifted
onto the coordinator's.

On one machine the shift is 0. On a host of a run across hosts, the host agent sets
`HX_CLOCK_SHIFT_S` for every process it starts: minus the offset the coordinator
measured from that host's clock to its own (plus, in tests, the offset the agent was
told to fake, so a host 250 ms ahead is a real case), so a detection, a ready instant
and t0 are on one timeline whichever host stamped them, to within the measured
uncertainty (the summary's `clock`).
"""

from __future__ import annotations

import os
import time

SHIFT_S = float(os.environ.get("HX_CLOCK_SHIFT_S") or 0.0)


def now() -> float:
    """The coordinator's monotonic clock, as read on this host (seconds)."""
    return time.monotonic() + SHIFT_S
