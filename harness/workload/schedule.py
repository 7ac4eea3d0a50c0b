"""The request schedule: which sensor sends which sample when, fixed before the run starts.

The schedule is a pure function of the workload config, the sensors, the run
duration and the seed, so every technique replays exactly the same requests
(MLPerf LoadGen's rule: one seed per random dimension, arrival and sample order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.core.config import ConfigError, check_range, fail, target_of
from harness.workload.samples.base import SampleLibrary, build

DEFAULT_SAMPLES = "harness.workload.samples.digits.Digits"
ARRIVALS = ("fixed", "poisson", "recorded")


@dataclass
class RateStep:
    at_s: float
    rate_hz: float

    def validate(self, key: str) -> None:
        check_range(f"{key}.at_s", self.at_s, 0)
        if self.rate_hz <= 0:
            fail(f"{key}.rate_hz", self.rate_hz, "must be > 0")


@dataclass
class WorkloadConfig:
    model: str = "digits"  # the model family's name (summary.json's `workload`)
    # the sample library (QSL): `_target_` (a SampleLibrary class) + its kwargs
    samples: dict[str, Any] = field(default_factory=lambda: {"_target_": DEFAULT_SAMPLES})
    sensors: list[str] = field(default_factory=list)  # empty = every node with role sensor
    rate_hz: float = 10.0  # per sensor
    arrival: str = "fixed"  # fixed | poisson | recorded
    timestamps_file: str | None = None  # recorded: one send time (s from start) per line
    rate_schedule: list[RateStep] = field(default_factory=list)  # rate changes over time
    slo_ms: float = 100.0  # deadline: answered later than this is `late`
    grace_s: float = 2.0  # after the run, how long answers are still awaited
    noise_seed: int = 0  # camera noise seed (the model card's evaluation uses 0)
    start_delay_s: float = 0.2  # from all sensors ready to the first scheduled request
    _library: SampleLibrary | None = field(default=None, init=False, repr=False,
                                           compare=False)

    def validate(self, key: str) -> None:
        if not self.model:
            fail(f"{key}.model", self.model, "must be a non-empty name")
        self._library = None
        self.library(key)
        if self.arrival not in ARRIVALS:
            fail(f"{key}.arrival", self.arrival, f"one of {', '.join(ARRIVALS)}")
        if self.rate_hz <= 0:
            fail(f"{key}.rate_hz", self.rate_hz, "must be > 0")
        check_range(f"{key}.rate_hz", self.rate_hz, hi=10_000)
        if self.slo_ms <= 0:
            fail(f"{key}.slo_ms", self.slo_ms, "must be > 0")
        check_range(f"{key}.grace_s", self.grace_s, 0, 600)
        check_range(f"{key}.start_delay_s", self.start_delay_s, 0.05, 60)
        if self.arrival == "recorded":
            if not self.timestamps_file:
                fail(f"{key}.timestamps_file", None, "needed with arrival=recorded")
            load_timestamps(self.timestamps_file, f"{key}.timestamps_file")

    def library(self, key: str = "workload") -> SampleLibrary:
        """The sample library `samples` names, built once; a bad one is a one-line
        ConfigError naming its key."""
        if self._library is not None:
            return self._library
        target_of(f"{key}.samples", self.samples)
        try:
            self._library = build(self.samples)
        except ValueError as e:  # a bad kwarg: "<kwarg>=<value>: why"
            raise ConfigError(f"{key}.samples.{str(e).splitlines()[0]}") from None
        except TypeError as e:  # an unknown or missing kwarg, or not a SampleLibrary
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConfigError(f"{key}.samples: {msg}") from None
        return self._library


@dataclass(frozen=True)
class Scheduled:
    request_id: int
    sensor: str
    sample_id: int
    scheduled_s: float


def load_timestamps(path: str, key: str) -> list[float]:
    try:
        text = Path(path).read_text()
    except OSError as e:
        fail(key, path, f"cannot read ({e.strerror})")
    try:
        ts = [float(x) for x in text.split()]
    except ValueError:
        fail(key, path, "every line must be a time in seconds")
    if not ts or any(not math.isfinite(t) or t < 0 for t in ts) or ts != sorted(ts):
        fail(key, path, "times must be finite, non-negative, non-decreasing and at least one")
    return ts


def rate_at(cfg: WorkloadConfig, t: float) -> float:
    rate = cfg.rate_hz
    for step in sorted(cfg.rate_schedule, key=lambda s: s.at_s):
        if step.at_s <= t:
            rate = step.rate_hz
    return rate


def segments(cfg: WorkloadConfig, duration_s: float) -> list[tuple[float, float, float]]:
    """(start, end, rate) of the constant-rate stretches of [0, duration_s): a new one at
    each `rate_schedule` step that changes the rate."""
    steps = sorted({s.at_s for s in cfg.rate_schedule if 0 < s.at_s < duration_s})
    out: list[tuple[float, float, float]] = []
    for a, b in zip([0.0, *steps], [*steps, duration_s], strict=True):
        rate = rate_at(cfg, a)
        if out and out[-1][2] == rate:
            out[-1] = (out[-1][0], b, rate)
        else:
            out.append((a, b, rate))
    return out


def arrival_times(cfg: WorkloadConfig, duration_s: float, rng: np.random.Generator,
                  phase: float = 0.0) -> list[float]:
    """Send times in [0, duration_s) for one sensor.

    A rate step takes effect at its `at_s`, between the old rate's arrivals or not.
    fixed: a stretch of rate r from `a` sends at a + (j + phase) / r, j = 0, 1, ...: the
    first arrival at the new rate is at the step (phase 0) or `phase` of a new period
    after it (a staggered sensor keeps its place). poisson: an exponential gap drawn at
    the old rate that would cross the step is dropped and the draws start again at the
    step at the new rate (exact for a Poisson process: it has no memory). Both are
    pure functions of the config and the rng's seed.
    """
    if cfg.arrival == "recorded":
        assert cfg.timestamps_file is not None
        return [t for t in load_timestamps(cfg.timestamps_file, "workload.timestamps_file")
                if t < duration_s]
    out: list[float] = []
    for a, b, rate in segments(cfg, duration_s):
        if cfg.arrival == "fixed":
            # times from the start of each stretch, so no error accumulates
            j = 0
            while (t := a + (j + phase) / rate) < b - 1e-9:
                out.append(t)
                j += 1
            continue
        t = a
        while (t := t + rng.exponential(1.0 / rate)) < b:
            out.append(t)
    return out


def make_schedule(cfg: WorkloadConfig, sensors: list[str], duration_s: float,
                  seed: int) -> list[Scheduled]:
    """Every request of the run, ordered by time; ids are 0..n-1 in that order."""
    ids = cfg.library().sample_ids()  # the library's test split, sorted
    rows: list[tuple[float, int, str, int]] = []
    for i, sensor in enumerate(sensors):
        arrivals_rng = np.random.default_rng([seed, 1, i])
        order = np.random.default_rng([seed, 2, i]).permutation(ids)
        # stagger fixed-rate sensors so they do not all fire at once (a share of a period)
        phase = i / len(sensors)
        for k, t in enumerate(arrival_times(cfg, duration_s, arrivals_rng, phase)):
            rows.append((t, i, sensor, int(order[k % len(order)])))
    rows.sort()
    return [Scheduled(n, sensor, sample, round(t, 9))
            for n, (t, _i, sensor, sample) in enumerate(rows)]
