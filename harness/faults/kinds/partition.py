"""Groups of nodes that cannot reach each other (nft drop at both ends), and healing."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.core.config import fail
from harness.faults.base import Fault


@dataclass
class Groups:
    groups: list[list[str]] = field(default_factory=list)


@dataclass
class PartitionParams(Groups):
    def validate(self, key: str) -> None:
        if len(self.groups) < 2:
            fail(f"{key}.groups", self.groups, "partition needs at least two groups")


class Partition(Fault):
    name = "partition"
    inverse = "heal"
    target = None
    Params = PartitionParams

    def check(self, action, topo, key) -> None:
        nodes = {n.name for n in topo.nodes}
        for g, group in enumerate(action.params.groups):
            for n in group:
                if n not in nodes:
                    fail(f"{key}.groups[{g}]", n, "unknown node")

    def apply(self, ctx, action) -> dict:
        groups = action.params.groups
        return {"table": ctx.emu.partition(groups), "groups": groups}


class Heal(Fault):
    name = "heal"
    restores = True
    target = None
    Params = Groups  # the groups it heals, for the event only: every partition goes

    def apply(self, ctx, action) -> dict:
        ctx.emu.heal()
        return {}
