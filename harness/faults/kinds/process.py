"""A node's processes die (its OS still answers: connection refused) or freeze.

A hang freezes the node's cgroup (cgroup2 `cgroup.freeze`: every process at once, and
any started or forked during the hang) or, on a node without one, SIGSTOPs each of its
processes; the event's `via` says which (`harness.emulation.backends.base.EmuNode.hang`).
"""

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
        return ctx.emu.nodes[action.target].hang()


class Resume(Fault):
    name = "resume"
    restores = True

    def apply(self, ctx, action) -> dict:
        return ctx.emu.nodes[action.target].resume()
