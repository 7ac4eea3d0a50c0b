"""What the harness itself costs during a run: its own process, its delay lines, its zygote.

A benchmark harness must not be the bottleneck of what it measures: on a 2-core
machine its CPU is taken from the stages'. Read from /proc at the end of the
run, before teardown: CPU seconds since the network came up (the harness process,
all its threads) and since each helper process started, and peak resident sets.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def proc_cpu_s(pid: int) -> float | None:
    """utime + stime of a live process (its own threads; not its children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15 of stat(5)


def peak_rss_mb(pid: int | str) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def footprint(cpu0_s: float, helpers: dict[str, list[int]]) -> dict:
    """The summary's `footprint`: this process since `cpu0_s` (its CPU then), and each kind
    of helper process (`delay_line`, `zygote`: their pids), summed over its processes."""
    out: dict = {"harness_cpu_s": round(own_cpu_s() - cpu0_s, 3),
                 "harness_peak_rss_mb": round(peak_rss_mb("self") or 0.0, 1)}
    for kind, pids in helpers.items():
        cpu = [c for c in map(proc_cpu_s, pids) if c is not None]
        rss = [r for r in map(peak_rss_mb, pids) if r is not None]
        out[kind] = {"n": len(pids), "cpu_s": round(sum(cpu), 3),
                     "peak_rss_mb": round(sum(rss), 1)}
    return out
