"""The request schedule: which sensor sends which sample when, fixed before the run starts.

The schedule is a pure function of the workload config, the sensors, the run
duration and the seed, so every technique replays exactly the same requests
(MLPerf LoadGen's rule: one seed per random dimension, arrival and sample order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.core.config import check_range, fail

MODELS = ("digits",)
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
    model: str = "digits"  # sample library and model family
    sensors: list[str] = field(default_factory=list)  # empty = every node with role sensor
    rate_hz: float = 10.0  # per sensor
    arrival: str = "fixed"  # fixed | poisson | recorded
    timestamps_file: str | None = None  # recorded: one send time (s from start) per line
    rate_schedule: list[RateStep] = field(default_factory=list)  # rate changes over time
    slo_ms: float = 100.0  # deadline: answered later than this is `late`
    grace_s: float = 2.0  # after the run, how long answers are still awaited
    noise_seed: int = 0  # camera noise seed (the model card's evaluation uses 0)
    start_delay_s: float = 0.5  # from all sensors ready to the first scheduled request

    def validate(self, key: str) -> None:
        if self.model not in MODELS:
            fail(f"{key}.model", self.model, f"one of {', '.join(MODELS)}")
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
    if not ts or any(t < 0 for t in ts) or ts != sorted(ts):
        fail(key, path, "times must be non-negative, non-decreasing and at least one")
    return ts


def rate_at(cfg: WorkloadConfig, t: float) -> float:
    rate = cfg.rate_hz
    for step in sorted(cfg.rate_schedule, key=lambda s: s.at_s):
        if step.at_s <= t:
            rate = step.rate_hz
    return rate


def arrival_times(cfg: WorkloadConfig, duration_s: float, rng: np.random.Generator,
                  phase_s: float) -> list[float]:
    """Send times in [0, duration_s) for one sensor."""
    if cfg.arrival == "recorded":
        assert cfg.timestamps_file is not None
        return [t for t in load_timestamps(cfg.timestamps_file, "workload.timestamps_file")
                if t < duration_s]
    out: list[float] = []
    if cfg.arrival == "fixed":
        # times from the start of each constant-rate segment, so no error accumulates
        seg_t, j, rate = phase_s, 0, rate_at(cfg, phase_s)
        t = seg_t
        while t < duration_s - 1e-9:
            out.append(t)
            j += 1
            t = seg_t + j / rate
            if rate_at(cfg, t + 1e-9) != rate:
                seg_t, j, rate = t, 0, rate_at(cfg, t + 1e-9)
        return out
    t = 0.0
    while True:  # Poisson; the rate is re-read after each arrival (piecewise constant)
        t += rng.exponential(1.0 / rate_at(cfg, t))
        if t >= duration_s:
            return out
        out.append(t)


def sample_ids(model: str) -> np.ndarray:
    """The samples sensors replay: the model's test split (never seen in training)."""
    from harness.workload import datasets

    if model == "digits":
        return np.asarray(datasets.digits_split()[1])
    raise ValueError(model)


def make_schedule(cfg: WorkloadConfig, sensors: list[str], duration_s: float,
                  seed: int) -> list[Scheduled]:
    """Every request of the run, ordered by time; ids are 0..n-1 in that order."""
    ids = sample_ids(cfg.model)
    rows: list[tuple[float, int, str, int]] = []
    for i, sensor in enumerate(sensors):
        arrivals_rng = np.random.default_rng([seed, 1, i])
        order = np.random.default_rng([seed, 2, i]).permutation(ids)
        # stagger fixed-rate sensors so they do not all fire at once
        phase = i / (len(sensors) * cfg.rate_hz)
        for k, t in enumerate(arrival_times(cfg, duration_s, arrivals_rng, phase)):
            rows.append((t, i, sensor, int(order[k % len(order)])))
    rows.sort()
    return [Scheduled(n, sensor, sample, round(t, 9))
            for n, (t, _i, sensor, sample) in enumerate(rows)]
