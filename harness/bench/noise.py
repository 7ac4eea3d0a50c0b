"""How busy is this machine right now: the bench measures it before trusting itself.

Timing figures from a shared 2-core machine are only as good as the quiet around
them. Three signals, each cheap and each able to say "too busy" on its own:
wake-up lateness of short sleeps (what every delay line, load generator and
health check suffers), CPU time used by processes other than this one (from
/proc/stat less our own), and steal time (a hypervisor giving our vCPU away).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

from harness.measure.node.probe import percentile

# Beyond these the bench's tight figures (sub-millisecond delay error, lateness p99)
# would report the neighbour, not the harness.
MAX_WAKE_P99_MS = 1.0
MAX_OTHER_CORES = 0.3
MAX_STEAL_PCT = 5.0


@dataclass
class Noise:
    seconds: float
    wake_late_p50_ms: float
    wake_late_p99_ms: float
    wake_late_max_ms: float
    other_cores: float  # cores' worth of CPU used by other processes meanwhile
    steal_pct: float
    cores: int
    busy: bool
    why: str

    def to_dict(self) -> dict:
        return asdict(self)


def _cpu_jiffies() -> tuple[int, int, int]:
    """(busy, steal, total) jiffies of all CPUs since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    busy = user + nice + system + irq + softirq
    return busy, steal, busy + idle + iowait + steal


def judge(wake_p99_ms: float, other_cores: float, steal_pct: float) -> str:
    """Why the machine is too busy to trust tight figures, or "" if it is not."""
    why = []
    if wake_p99_ms > MAX_WAKE_P99_MS:
        why.append(f"1 ms sleeps woke up to {wake_p99_ms:.2f} ms late (p99 > "
                   f"{MAX_WAKE_P99_MS} ms)")
    if other_cores > MAX_OTHER_CORES:
        why.append(f"other processes used {other_cores:.2f} cores (> {MAX_OTHER_CORES})")
    if steal_pct > MAX_STEAL_PCT:
        why.append(f"steal {steal_pct:.1f} % (> {MAX_STEAL_PCT} %)")
    return "; ".join(why)


def measure(seconds: float = 2.0, sleep_ms: float = 1.0) -> Noise:
    """Sleep `sleep_ms` again and again for `seconds` and count what else ran."""
    tick = os.sysconf("SC_CLK_TCK")
    b0, s0, t0 = _cpu_jiffies()
    own0 = sum(os.times()[:2])
    start = time.monotonic()
    late: list[float] = []
    while time.monotonic() - start < seconds:
        a = time.monotonic()
        time.sleep(sleep_ms / 1000)
        late.append((time.monotonic() - a) * 1000 - sleep_ms)
    elapsed = time.monotonic() - start
    b1, s1, t1 = _cpu_jiffies()
    own = (sum(os.times()[:2]) - own0) * tick
    other = max(0.0, (b1 - b0 - own) / tick / elapsed)
    steal = 100 * (s1 - s0) / max(1, t1 - t0)
    p99 = percentile(late, 99)
    why = judge(p99, other, steal)
    return Noise(round(elapsed, 3), round(percentile(late, 50), 4), round(p99, 4),
                 round(max(late), 4), round(other, 3), round(steal, 2),
                 os.cpu_count() or 1, bool(why), why)
