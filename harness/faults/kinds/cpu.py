"""A node's CPU: thermal throttling (a lower quota) and contention (busy loops beside it)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.config import check_range, fail
from harness.faults.base import Fault


@dataclass
class ThrottleParams:
    cpu_pct: float | None = None  # CPU quota in % of one core

    def validate(self, key: str) -> None:
        if self.cpu_pct is None:
            fail(f"{key}.cpu_pct", None, "throttle needs cpu_pct")
        check_range(f"{key}.cpu_pct", self.cpu_pct, 1, 100_000)


class Throttle(Fault):
    name = "throttle"
    inverse = "unthrottle"
    Params = ThrottleParams

    def apply(self, ctx, action) -> dict:
        ctx.emu.nodes[action.target].resources.set_cpu(action.params.cpu_pct / 100)
        return {"cpu_pct": action.params.cpu_pct}


class Unthrottle(Fault):
    name = "unthrottle"
    restores = True

    def apply(self, ctx, action) -> dict:
        cpu = ctx.emu.topo.node(action.target).cpu
        ctx.emu.nodes[action.target].resources.set_cpu(cpu)
        return {"cpu": cpu}


@dataclass
class ContentionParams:
    workers: int = 1  # busy loops, each in the node's cgroup

    def validate(self, key: str) -> None:
        check_range(f"{key}.workers", self.workers, 1, 64)


class Contention(Fault):
    name = "contention"
    inverse = "contention_end"
    Params = ContentionParams

    def apply(self, ctx, action) -> dict:
        node = ctx.emu.nodes[action.target]
        busy = [node.python, "-c", "while True: pass"]
        ctx.stress.setdefault(action.target, []).extend(
            node.popen(busy) for _ in range(action.params.workers))
        return {"workers": action.params.workers}


class ContentionEnd(Fault):
    name = "contention_end"
    restores = True

    def apply(self, ctx, action) -> dict:
        procs = ctx.stress.pop(action.target, [])
        for p in procs:
            p.kill()
            p.wait()
        return {"stopped": len(procs)}
