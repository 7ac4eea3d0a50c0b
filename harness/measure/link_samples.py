"""Link counters over time: the shaper's per-link byte counters, sampled while the run
goes, so throughput can be drawn against the fault timeline (`links.parquet`).

Only shapers that count (the userspace delay line) have samples; with netem the table
is empty and says so by having no rows.
"""

from __future__ import annotations

import threading
import time

from harness.emulation.shapers.base import Shaper

PERIOD_S = 0.25
COLUMNS = ["t_s", "link", "dir", "rx_bytes", "fwd_bytes", "rx_frames", "fwd_frames"]


class LinkSampler:
    def __init__(self, shaper: Shaper, t0: float, period_s: float = PERIOD_S) -> None:
        self.shaper, self.t0, self.period_s = shaper, t0, period_s
        self.rows: list[dict] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="link-samples", daemon=True)

    def start(self) -> LinkSampler:
        self.thread.start()
        return self

    def sample(self) -> None:
        try:
            stats = self.shaper.stats()
        except Exception:  # the shaper is going down; the last sample stands
            return
        t = round(time.monotonic() - self.t0, 6)
        for link, dirs in stats.items():
            for d, c in dirs.items():
                self.rows.append({"t_s": t, "link": link, "dir": d,
                                  **{k: c.get(k, 0) for k in COLUMNS[3:]}})

    def _loop(self) -> None:
        self.sample()
        while not self.stopped.wait(self.period_s):
            self.sample()

    def stop(self) -> list[dict]:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join()
        self.sample()
        return self.rows
