"""The bench's check of its own machine: a busy neighbour is seen, and said why."""

from __future__ import annotations

import subprocess
import sys

from harness.measure import noise


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
    assert n.wake_late_p50_ms >= 0 and n.wake_late_p99_ms >= n.wake_late_p50_ms


def test_the_bench_report_names_a_busy_section_first() -> None:
    from harness.report.markdown import noise_md

    quiet = {"wake_late_p50_ms": 0.1, "wake_late_p99_ms": 0.2, "wake_late_max_ms": 0.4,
             "other_cores": 0.01, "steal_pct": 0.0, "busy": False, "why": ""}
    busy = {**quiet, "other_cores": 1.0, "busy": True,
            "why": "other processes used 1.00 cores (> 0.3)"}
    md = noise_md({"link": quiet, "pipeline": busy, "end": quiet})
    assert "Measured on a busy machine: the figures of `pipeline`" in md
    assert "pipeline: other processes used 1.00 cores" in md
    assert "`link`" not in md.split("|")[0]
    assert "Quiet before every section" in noise_md({"link": quiet})
