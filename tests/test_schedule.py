"""The arrival schedule, without root: rates, rate steps and bursts, Poisson arrivals and
recorded timestamps, as pure functions of config and seed."""

from __future__ import annotations

import numpy as np
import pytest

from harness.core.config import ConfigError, from_dict
from harness.workload.schedule import RateStep, WorkloadConfig, make_schedule


def wl(**kw) -> WorkloadConfig:
    return from_dict(WorkloadConfig, kw, "workload")


def test_same_seed_same_schedule_other_seed_other_order() -> None:
    a = make_schedule(wl(rate_hz=20), ["s1", "s2"], 5, seed=1)
    b = make_schedule(wl(rate_hz=20), ["s1", "s2"], 5, seed=1)
    c = make_schedule(wl(rate_hz=20), ["s1", "s2"], 5, seed=2)
    assert a == b
    assert [s.sample_id for s in a] != [s.sample_id for s in c]
    assert [s.request_id for s in a] == list(range(len(a)))
    assert len(a) == 2 * 5 * 20


def test_fixed_rate_is_per_sensor_and_staggered() -> None:
    s = make_schedule(wl(rate_hz=10), ["s1", "s2"], 1, seed=0)
    t1 = [x.scheduled_s for x in s if x.sensor == "s1"]
    t2 = [x.scheduled_s for x in s if x.sensor == "s2"]
    assert np.allclose(np.diff(t1), 0.1) and np.allclose(np.diff(t2), 0.1)
    assert t2[0] == pytest.approx(0.05)


def test_poisson_mean_rate() -> None:
    s = make_schedule(wl(rate_hz=50, arrival="poisson"), ["s1"], 100, seed=3)
    assert len(s) == pytest.approx(5000, rel=0.05)
    gaps = np.diff([x.scheduled_s for x in s])
    assert np.std(gaps) == pytest.approx(np.mean(gaps), rel=0.1)  # exponential: sd = mean


def test_rate_schedule_burst() -> None:
    cfg = wl(rate_hz=10, rate_schedule=[{"at_s": 2, "rate_hz": 100}, {"at_s": 3, "rate_hz": 10}])
    assert cfg.rate_schedule[0] == RateStep(2, 100)
    s = make_schedule(cfg, ["s1"], 5, seed=0)
    per_s = np.bincount([int(x.scheduled_s) for x in s])
    assert list(per_s) == [10, 10, 100, 10, 10]


def test_a_fixed_rate_step_between_arrivals_starts_at_the_step() -> None:
    """1 Hz -> 100 Hz at 2.5 s, between the 1 Hz arrivals at 2 and 3: the 100 Hz arrivals
    start at 2.5 s, not at the next 1 Hz arrival; back to 1 Hz at 3.25 s likewise."""
    cfg = wl(rate_hz=1, rate_schedule=[{"at_s": 2.5, "rate_hz": 100},
                                       {"at_s": 3.25, "rate_hz": 1}])
    t = [x.scheduled_s for x in make_schedule(cfg, ["s1"], 6, seed=0)]
    assert t[:4] == [0, 1, 2, 2.5]
    burst = [x for x in t if 2.5 <= x < 3.25]
    assert len(burst) == 75 and np.allclose(np.diff(burst), 0.01)
    assert [x for x in t if x >= 3.25] == [3.25, 4.25, 5.25]


def test_a_staggered_sensor_keeps_its_place_within_the_new_period() -> None:
    """The second of two sensors is half a period behind the first, at every rate: its
    first arrival at the new rate is half a new period after the step (never a whole
    old one)."""
    cfg = wl(rate_hz=1, rate_schedule=[{"at_s": 2.25, "rate_hz": 100}])
    s = make_schedule(cfg, ["s1", "s2"], 3, seed=0)
    t2 = [x.scheduled_s for x in s if x.sensor == "s2"]
    assert t2[:3] == [0.5, 1.5, 2.255]
    assert np.allclose(np.diff(t2[2:]), 0.01) and len(t2) == 2 + 75


def test_a_poisson_rate_step_between_arrivals_takes_effect_at_the_step() -> None:
    """Poisson 1 Hz -> 100 Hz at 2.5 s: [2.5, 3.0) holds ~50 arrivals for every seed (the
    old code drew the gap across the step at 1 Hz, so usually none there), and the 1 Hz
    part before the step is what the seed gives without any step."""
    counts = []
    for seed in range(20):
        stepped = wl(rate_hz=1, arrival="poisson", rate_schedule=[{"at_s": 2.5, "rate_hz": 100}])
        t = [x.scheduled_s for x in make_schedule(stepped, ["s1"], 3, seed=seed)]
        counts.append(sum(2.5 <= x < 3.0 for x in t))
        plain = [x.scheduled_s for x in make_schedule(wl(rate_hz=1, arrival="poisson"), ["s1"],
                                                      2.5, seed=seed)]
        assert [x for x in t if x < 2.5] == plain
        assert t == [x.scheduled_s for x in make_schedule(stepped, ["s1"], 3, seed=seed)]
    # each count is Poisson(50): sd ~7; every one of 20 within 50 +- 25 (3.5 sd)
    assert min(counts) >= 25 and max(counts) <= 75, counts
    assert np.mean(counts) == pytest.approx(50, abs=5), counts


def test_a_poisson_step_down_takes_effect_at_the_step() -> None:
    """100 Hz -> 1 Hz at 1.0 s: the first arrival after the step is a 1 Hz gap away
    (in [1.0, 1.05) for ~5 % of seeds), not the rest of a 100 Hz gap drawn before it
    (there for ~99 %)."""
    soon = 0
    for seed in range(40):
        cfg = wl(rate_hz=100, arrival="poisson", rate_schedule=[{"at_s": 1.0, "rate_hz": 1}])
        t = [x.scheduled_s for x in make_schedule(cfg, ["s1"], 2, seed=seed)]
        assert 60 <= sum(x < 1.0 for x in t) <= 140
        soon += any(1.0 <= x < 1.05 for x in t)
    assert soon <= 10, soon  # binomial(40, 0.049): mean 2, P(> 10) < 1e-4


def test_recorded_timestamps(tmp_path) -> None:
    f = tmp_path / "ts.txt"
    f.write_text("0\n0.25\n0.5\n4\n9\n")
    s = make_schedule(wl(arrival="recorded", timestamps_file=str(f)), ["s1"], 5, seed=0)
    assert [x.scheduled_s for x in s] == [0, 0.25, 0.5, 4]


@pytest.mark.parametrize("text", ["0.1\nnan\n", "0.1\ninf\n", "0.2\n0.1\n", "-1\n"])
def test_recorded_timestamps_must_be_finite_and_in_order(tmp_path, text: str) -> None:
    f = tmp_path / "ts.txt"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        wl(arrival="recorded", timestamps_file=str(f))
    assert str(e.value).startswith("workload.timestamps_file"), str(e.value)
