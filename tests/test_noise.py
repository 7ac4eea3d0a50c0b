"""The bench's check of its own machine: a busy neighbour is seen, and said why."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from harness.bench import noise


def test_judge_names_each_reason() -> None:
    assert noise.judge(0.2, 0.05, 0.0) == ""
    assert "woke up to 3.00 ms late" in noise.judge(3.0, 0.05, 0.0)
    assert "other processes used 1.00 cores" in noise.judge(0.2, 1.0, 0.0)
    assert "steal 12.0 %" in noise.judge(0.2, 0.0, 12.0)


def test_a_busy_loop_beside_it_makes_the_machine_busy() -> None:
    """One process spinning uses about a core: whatever else runs, that is > 0.3."""
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        n = noise.measure(seconds=1.0)
    finally:
        spin.kill()
        spin.wait()
    assert n.other_cores >= 0.6, n
    assert n.busy and "other processes used" in n.why, n


class FakeMachine:
    """A clock whose 1 ms sleeps wake up late by known amounts (95 % 0.2 ms, 5 % 3 ms,
    once 20 ms) and a /proc/stat where others use `other` cores and the hypervisor
    steals `steal` of the time of 2 vCPUs, for `measure` to read."""

    def __init__(self, other: float, steal: float, tick: int = 100) -> None:
        self.now, self.n, self.other, self.steal, self.tick = 1000.0, 0, other, steal, tick

    def monotonic(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.n += 1
        late_ms = 20.0 if self.n == 7 else 3.0 if self.n % 20 == 0 else 0.2
        self.now += s + late_ms / 1000

    def jiffies(self) -> tuple[int, int, int]:
        t = (self.now - 1000.0) * self.tick
        return round(self.other * t), round(self.steal * 2 * t), round(2 * t)


def _on(fake: FakeMachine, monkeypatch) -> None:
    """`noise` measures `fake` (and uses no CPU time of its own)."""
    monkeypatch.setattr(noise, "time", fake)
    monkeypatch.setattr(noise, "_cpu_jiffies", fake.jiffies)
    monkeypatch.setattr(noise, "os", SimpleNamespace(
        times=lambda: (0.0, 0.0, 0.0, 0.0, 0.0), sysconf=lambda _k: fake.tick,
        cpu_count=lambda: 2))


def test_wake_lateness_and_cpu_of_others_on_a_machine_with_known_answers(monkeypatch) -> None:
    fake = FakeMachine(other=0.5, steal=0.1)
    _on(fake, monkeypatch)
    n = noise.measure(seconds=2.0)
    assert fake.n > 1000  # ~1.3 ms a round: the lateness is spread over many samples
    assert (n.wake_late_p50_ms, n.wake_late_p99_ms, n.wake_late_max_ms) == \
        (0.2, 3.0, 20.0), n
    assert n.other_cores == pytest.approx(0.5, abs=0.01), n
    assert n.steal_pct == pytest.approx(10.0, abs=0.1), n
    assert n.busy and "woke up to 3.00 ms late" in n.why and "used 0.50 cores" in n.why


def test_a_quiet_machine_is_not_busy(monkeypatch) -> None:
    fake = FakeMachine(other=0.1, steal=0.0)
    fake.sleep = lambda s: setattr(fake, "now", fake.now + s + 0.0001)  # 0.1 ms late
    _on(fake, monkeypatch)
    n = noise.measure(seconds=1.0)
    assert n.wake_late_p99_ms == pytest.approx(0.1, abs=1e-3), n
    assert n.other_cores == pytest.approx(0.1, abs=0.01) and not n.busy and n.why == "", n


def test_the_bench_report_names_a_busy_section_first() -> None:
    from harness.bench.markdown import noise_md

    quiet = {"wake_late_p50_ms": 0.1, "wake_late_p99_ms": 0.2, "wake_late_max_ms": 0.4,
             "other_cores": 0.01, "steal_pct": 0.0, "busy": False, "why": ""}
    busy = {**quiet, "other_cores": 1.0, "busy": True,
            "why": "other processes used 1.00 cores (> 0.3)"}
    md = noise_md({"link": quiet, "pipeline": busy, "end": quiet})
    assert "Measured on a busy machine: the figures of `pipeline`" in md
    assert "pipeline: other processes used 1.00 cores" in md
    assert "`link`" not in md.split("|")[0]
    assert "Quiet before every section" in noise_md({"link": quiet})
