"""OOM kills as events: a node's memory cgroup counts them, a watcher records each.

A stage killed by the kernel for its node's memory limit dies like a crashed one
(its requests end failed or lost, as always); the `node.oom` event says why, at the
time it happened (within one polling period).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from harness.emulation.network import Emulation

PERIOD_S = 0.05


class OomWatch:
    def __init__(self, emu: Emulation, record: Callable[..., None]) -> None:
        self.emu, self.record = emu, record
        self.seen = {n: node.resources.oom_kills() for n, node in emu.nodes.items()}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="oom-watch", daemon=True)

    def start(self) -> OomWatch:
        self.thread.start()
        return self

    def check(self) -> None:
        for name, node in self.emu.nodes.items():
            try:
                n = node.resources.oom_kills()
            except OSError:  # the node is being torn down
                continue
            if n > self.seen[name]:
                self.record("node.oom", name, {"oom_kills": n - self.seen[name],
                                               "mem_mb": self.emu.topo.node(name).mem_mb})
                self.seen[name] = n

    def _loop(self) -> None:
        while not self.stopped.wait(PERIOD_S):
            self.check()

    def stop(self) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join()
        self.check()
