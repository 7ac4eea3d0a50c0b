"""OOM kills as events: a node's memory cgroup counts them, a watcher records each.

A stage killed by the kernel for its node's memory limit dies like a crashed one
(its requests end failed or lost, as always); the `node.oom` event says why, at the
time it happened (within one polling period: 50 ms, longer with many nodes, so that a
fleet's 200 nodes cost the watcher no more than a small topology's 40 would).
"""

from __future__ import annotations

from collections.abc import Callable

from harness.core.periodic import Periodic
from harness.emulation.network import Emulation

PERIOD_S = 0.05
NODES_PER_PERIOD = 40  # one node's counter read costs ~35 us of CPU


class OomWatch(Periodic):
    period_s, name = PERIOD_S, "oom-watch"

    def __init__(self, emu: Emulation, record: Callable[..., None]) -> None:
        self.emu, self.record = emu, record
        self.seen = {n: node.resources.oom_kills() for n, node in emu.nodes.items()}
        super().__init__()
        self.period_s = PERIOD_S * max(1.0, len(emu.nodes) / NODES_PER_PERIOD)

    def tick(self) -> None:
        for name, node in self.emu.nodes.items():
            try:
                n = node.resources.oom_kills()
            except OSError:  # the node is being torn down
                continue
            if n > self.seen[name]:
                self.record("node.oom", name, {"oom_kills": n - self.seen[name],
                                               "mem_mb": self.emu.topo.node(name).mem_mb})
                self.seen[name] = n
