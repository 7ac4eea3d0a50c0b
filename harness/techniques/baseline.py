"""No resilience: one copy of each stage, the plain chain; a failure stays a failure."""

from __future__ import annotations

from harness.techniques.base import Technique


class Baseline(Technique):
    name = "baseline"
