"""A link goes down, or degrades (bandwidth, delay, jitter, loss, a bandwidth trace)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.config import LinkProps, fail
from harness.faults.base import Fault

DIRECTIONS = ("fwd", "rev", "both")


class LinkDown(Fault):
    name = "link_down"
    inverse = "link_up"
    target = "link"

    def apply(self, ctx, action) -> dict:
        ctx.emu.set_link_up(action.target, False)
        return {}


class LinkUp(Fault):
    name = "link_up"
    restores = True
    target = "link"

    def apply(self, ctx, action) -> dict:
        ctx.emu.set_link_up(action.target, True)
        return {}


@dataclass
class DegradeParams:
    direction: str = "both"  # fwd (a->b) | rev | both
    bw_mbit: float | None = None
    delay_ms: float | None = None
    jitter_ms: float | None = None
    loss_pct: float | None = None
    trace: str | None = None  # a Mahimahi trace for the bandwidth

    def change(self) -> LinkProps:
        return LinkProps(self.bw_mbit, self.delay_ms, self.jitter_ms, self.loss_pct)

    def validate(self, key: str) -> None:
        if self.direction not in DIRECTIONS:
            fail(f"{key}.direction", self.direction, "one of fwd, rev, both")
        self.change().validate(key)
        if not (self.change().set_fields() or self.trace):
            fail(key, "link_degrade", "link_degrade needs bw_mbit, delay_ms, jitter_ms, "
                                      "loss_pct or trace")


class LinkDegrade(Fault):
    name = "link_degrade"
    inverse = "link_restore"
    target = "link"
    Params = DegradeParams

    def check(self, action, topo, key) -> None:
        if topo.link(action.target).real:
            fail(f"{key}.target", action.target, "a real link is not shaped: degrade an "
                 "emulated one (link_down and partitions act on real links too)")
        if action.params.trace:
            from harness.emulation.traces import load_mahimahi

            load_mahimahi(action.params.trace, f"{key}.trace")

    def apply(self, ctx, action) -> dict:
        p = action.params
        change = p.change()
        if change.set_fields():
            ctx.emu.set_link(action.target, change, p.direction)
        if p.trace:
            ctx.emu.follow_trace(action.target, p.direction, p.trace)
        return {"direction": p.direction, **change.set_fields(),
                **({"trace": p.trace} if p.trace else {})}


class LinkRestore(Fault):
    name = "link_restore"
    restores = True
    target = "link"

    def apply(self, ctx, action) -> dict:
        ctx.emu.restore_link(action.target)
        return {}
