"""A canary stream: a light request through the pipeline every few milliseconds, beside
the workload, so that the instant a technique recovered is known to the canary's period
instead of the workload's (50 ms for digits), and MTTR does not carry the phase of the
request schedule. It never counts in availability, accuracy or latency.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.config import check_range, fail
from harness.workload.replay import CANARY as NAME  # its sensor process, files and rows
from harness.workload.schedule import Scheduled

FIRST_ID = 1_000_000_000  # canary request ids: far from the schedule's 0..n-1


@dataclass
class MeasureConfig:
    canary_hz: float = 0.0  # 0: no canary; MTTR read off the workload's own requests

    def validate(self, key: str) -> None:
        check_range(f"{key}.canary_hz", self.canary_hz, 0, 1000)

    def check_pipeline(self, key: str, plan, redundant: bool) -> None:
        """A canary is one request down a chain: a pipeline whose requests are sent by
        every sensor (redundant sensing, branches that join) has no one entry for it."""
        if self.canary_hz and (redundant or plan.joins()):
            fail(f"{key}.canary_hz", self.canary_hz, "needs a chain fed by each sensor on "
                 "its own (not redundant sensing or branches that join)")


def canary_schedule(hz: float, duration_s: float, sample_ids) -> list[Scheduled]:
    """Every canary request: at 0, 1/hz, 2/hz ... until the run's end, cycling through
    the sample library (its answers are not judged)."""
    if hz <= 0 or len(sample_ids) == 0:
        return []
    n = int(duration_s * hz)
    return [Scheduled(FIRST_ID + i, NAME, int(sample_ids[i % len(sample_ids)]),
                      round(i / hz, 9)) for i in range(n)]
