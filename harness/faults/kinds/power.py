"""A node loses power, and gets it back.

A crash is silent, like a machine that lost power: its processes die and its
links carry nothing, so peers see timeouts, never a connection reset. When it
is restored it boots its services (the pipeline restarts the stages there).
"""

from __future__ import annotations

from harness.faults.base import Fault


class Crash(Fault):
    name = "crash"
    inverse = "restore"

    def apply(self, ctx, action) -> dict:
        ctx.emu.silence_node(action.target, True)
        return {"killed": ctx.emu.nodes[action.target].kill_all()}


class Restore(Fault):
    name = "restore"
    restores = True

    def apply(self, ctx, action) -> dict:
        ctx.emu.silence_node(action.target, False)
        for hook in ctx.on_restore:
            hook(action.target)
        return {}
