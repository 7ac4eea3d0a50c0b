"""No resilience: one copy of each stage, the plain chain; a failure stays a failure.

It is also the technique that runs a fleet (stages placed by role: one instance per
device, each on its own path): resilience techniques re-route one instance per stage.
"""

from __future__ import annotations

from pathlib import Path

from harness.pipeline.instances import Instance, placed
from harness.pipeline.plan import PipelinePlan
from harness.techniques.base import Technique


class Baseline(Technique):
    name = "baseline"
    fleet = True
    branches = True  # a join stage waits for every branch (a missing one fails)

    def instances(self, plan: PipelinePlan, files: dict[str, Path],
                  ips: dict[str, str]) -> list[Instance]:
        if plan.fleet:
            return placed(plan, files, ips)
        return super().instances(plan, files, ips)
