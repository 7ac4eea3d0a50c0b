"""Link counters over time: the shaper's per-link byte counters, sampled while the run
goes, so throughput can be drawn against the fault timeline (`links.parquet`).

Only shapers that count (the userspace delay line) have samples; with netem the table
is empty and says so by having no rows.
"""

from __future__ import annotations

import time

from harness.core.periodic import Periodic
from harness.emulation.shapers.base import Shaper

PERIOD_S = 0.25
COLUMNS = ["t_s", "link", "dir", "rx_bytes", "fwd_bytes", "rx_frames", "fwd_frames"]


class LinkSampler(Periodic):
    period_s, name = PERIOD_S, "link-samples"

    def __init__(self, shaper: Shaper, t0: float) -> None:
        self.shaper, self.t0 = shaper, t0
        self.rows: list[dict] = []
        super().__init__()

    def tick(self) -> None:
        try:
            stats = self.shaper.stats()
        except Exception:  # the shaper is going down; the last sample stands
            return
        t = round(time.monotonic() - self.t0, 6)
        for link, dirs in stats.items():
            for d, c in dirs.items():
                self.rows.append({"t_s": t, "link": link, "dir": d,
                                  **{k: c.get(k, 0) for k in COLUMNS[3:]}})
