"""Clock offsets between hosts (a simulated clock whose answer is known)."""

from __future__ import annotations

import random

import pytest

from harness.hosts.clock import Offset, drift, measure


class Wire:
    """A coordinator clock and a host clock `offset_s` ahead, joined by legs whose
    durations are drawn from `legs` (s): the host reads its clock when the request
    arrives."""

    def __init__(self, offset_s: float, legs: list[tuple[float, float]]) -> None:
        self.t, self.offset_s, self.legs = 100.0, offset_s, iter(legs)
        self.back = 0.0

    def local(self) -> float:
        self.t += self.back
        self.back = 0.0
        return self.t

    def remote(self) -> float:
        there, back = next(self.legs)
        self.t += there
        self.back = back
        return self.t + self.offset_s


def test_a_known_offset_is_recovered_within_the_stated_bound() -> None:
    # legs 2+8, 1+1, 5+3 ms: the second exchange (2 ms round trip) is the estimate;
    # it reads the host at t0 + 1 ms, its midpoint is t0 + 1 ms: exact here
    w = Wire(0.250, [(0.002, 0.008), (0.001, 0.001), (0.005, 0.003)])
    o = measure(w.remote, n=3, local_now=w.local)
    assert o.rtt_ms == pytest.approx(2.0)
    assert o.uncertainty_ms == pytest.approx(1.0)
    assert o.offset_ms == pytest.approx(250.0)


def test_asymmetric_legs_stay_within_the_bound() -> None:
    # one exchange, 9 ms there and 1 ms back: read at t0 + 9, midpoint t0 + 5: the
    # estimate is 4 ms high, inside the +-5 ms the round trip allows
    w = Wire(-0.040, [(0.009, 0.001)])
    o = measure(w.remote, n=1, local_now=w.local)
    assert o.offset_ms == pytest.approx(-36.0) and o.uncertainty_ms == pytest.approx(5.0)
    rng = random.Random(3)
    for _ in range(200):
        legs = [(rng.uniform(0, 0.02), rng.uniform(0, 0.02)) for _ in range(5)]
        w = Wire(0.25, legs)
        o = measure(w.remote, n=5, local_now=w.local)
        assert abs(o.offset_ms - 250.0) <= o.uncertainty_ms + 1e-9


def test_a_host_timestamp_goes_on_the_coordinator_clock() -> None:
    o = Offset(250.0, 1.0, 2.0, 3)
    assert o.to_coordinator(10.250) == pytest.approx(10.0)
    d = drift(o, Offset(253.0, 0.5, 1.0, 3))
    assert d["moved_ms"] == pytest.approx(3.0) and d["uncertainty_ms"] == pytest.approx(4.0)


def test_the_clock_report_bounds_the_run_and_names_the_host_past_it() -> None:
    from harness.hosts.split import clock_report

    before = {"h1": Offset(0.1, 0.5, 1.0, 8), "h2": Offset(250.0, 0.4, 0.8, 8)}
    after = {"h1": Offset(0.4, 0.6, 1.2, 8), "h2": Offset(250.1, 0.3, 0.6, 8)}
    # h1 moved 0.3 ms: 0.6 + 0.3 = 0.9 over the run; h2 0.1: 0.4 + 0.1 = 0.5. The default
    # bound is a tenth of the MTTD: 6 ms for 60, both within
    rep, why = clock_report(before, after, None, 60.0)
    assert why == [] and rep["h1"]["uncertainty_ms"] == pytest.approx(0.9)
    assert rep["h2"]["uncertainty_ms"] == pytest.approx(0.5) and rep["h2"]["bound_ms"] == 6.0
    # a bound of 0.7 ms: h1 is past it, h2 is not
    rep, why = clock_report(before, after, 0.7, 60.0)
    assert why == ["clock: host h1: uncertainty 0.900 ms > bound 0.700 ms "
                   "(hosts.clock_bound_ms, else MTTD / 10)"]
    # no MTTD and no bound: nothing to hold it to; an offset not measured again: INVALID
    assert clock_report(before, after, None, None)[1] == []
    rep, why = clock_report(before, {"h1": after["h1"]}, None, None)
    assert why == ["clock: host h2: its offset could not be measured after the run"]
    assert rep["h2"]["after"] is None
