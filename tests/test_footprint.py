"""The summary's `footprint` (harness/measure/live/footprint.py): what the harness's own
processes cost, read from /proc, on processes whose cost is known by construction."""

from __future__ import annotations

import subprocess
import sys

from harness.measure.live.footprint import footprint, own_cpu_s

# burns 0.3 s of its own CPU time (not wall time: a busy machine stretches only the
# latter), touches 64 MiB, says so, then waits to be read
WORKER = """
import sys, time
buf = bytearray(64 << 20)
for i in range(0, len(buf), 4096):
    buf[i] = 1
while time.process_time() < 0.3:
    pass
print("done", flush=True)
sys.stdin.read()
"""


def test_helpers_cpu_and_peak_memory_are_theirs() -> None:
    procs = [subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        for p in procs:
            assert p.stdout.readline() == "done\n"
        cpu0 = own_cpu_s()
        out = footprint(cpu0, {"worker": [p.pid for p in procs], "none": []})
    finally:
        for p in procs:
            p.kill()
            p.wait()
    w = out["worker"]
    assert w["n"] == 2
    # each stops at 0.3 s of CPU, its start and page touching included; /proc counts in
    # 10 ms ticks, each reading cut down to one
    assert 2 * (0.3 - 0.02) <= w["cpu_s"] <= 2 * (0.3 + 0.05), w
    assert 2 * 64 <= w["peak_rss_mb"] <= 2 * (64 + 40), w  # + an interpreter each
    assert out["none"] == {"n": 0, "cpu_s": 0.0, "peak_rss_mb": 0.0}
    # this process: its CPU since cpu0 only (reading /proc is cheap), its own peak
    assert out["harness_cpu_s"] <= 0.2, out
    assert out["harness_peak_rss_mb"] >= 20, out
