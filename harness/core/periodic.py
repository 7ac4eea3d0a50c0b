"""A task run every period on a daemon thread, once more when stopped: the shape of
the run's watchers (OOM kills, link counters)."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod


class Periodic(ABC):
    period_s: float = 0.1
    name: str = "periodic"

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=self.name, daemon=True)

    @abstractmethod
    def tick(self) -> None:
        """One round; must not raise (a watcher outlives what it watches)."""

    def start(self):
        self.thread.start()
        return self

    def _loop(self) -> None:
        self.tick()
        while not self.stopped.wait(self.period_s):
            self.tick()

    def stop(self) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join()
        self.tick()
