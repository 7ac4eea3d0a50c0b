"""A node's processes die (its OS still answers: connection refused) or freeze."""

from __future__ import annotations

from harness.faults.base import Fault


class Kill(Fault):
    name = "kill"

    def apply(self, ctx, action) -> dict:
        return {"killed": ctx.emu.nodes[action.target].kill_all()}


class Hang(Fault):
    name = "hang"
    inverse = "resume"

    def apply(self, ctx, action) -> dict:
        return {"stopped": ctx.emu.nodes[action.target].freeze()}


class Resume(Fault):
    name = "resume"
    restores = True

    def apply(self, ctx, action) -> dict:
        return {"resumed": ctx.emu.nodes[action.target].thaw()}
