"""A fault schedule: timed actions on named nodes and links, checked before the run.

An action is `{at_s, action, target, for_s, ...}`: the common keys here, the
rest belong to the action's kind (`harness/faults/kinds/`), which validates
them. `for_s` schedules the kind's inverse that much later. Nothing here
touches the network.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from harness.core.config import check_range, fail, from_dict
from harness.emulation.topology import Topology
from harness.faults.base import Fault, registry

COMMON = ("at_s", "action", "target", "for_s")


@dataclass
class Common:
    at_s: float
    action: str
    target: str | None = None  # node or link name
    for_s: float | None = None  # then the inverse action


@dataclass
class FaultAction:
    at_s: float
    action: str
    target: str | None = None
    for_s: float | None = None
    params: Any = None  # the kind's Params

    @property
    def kind(self) -> Fault:
        return registry()[self.action]

    def label(self) -> str:
        """What the event names: the target, or the partition's groups."""
        groups = getattr(self.params, "groups", None) or []
        return self.target or "|".join(",".join(g) for g in groups)

    def to_dict(self) -> dict[str, Any]:
        """Flat, as written in the config (summary.json's `faults_schedule`)."""
        return {"at_s": self.at_s, "action": self.action, "target": self.target,
                "for_s": self.for_s, **dataclasses.asdict(self.params)}


def parse_action(data: Any, key: str) -> FaultAction:
    """One action from its config mapping; ConfigError (one line) naming the bad key."""
    if isinstance(data, FaultAction):
        return data
    if not isinstance(data, dict):
        fail(key, data, "must be a mapping {at_s, action, target, ...}")
    kinds = registry()
    action = data.get("action")
    if action not in kinds:
        fail(f"{key}.action", action, f"unknown action (one of {', '.join(sorted(kinds))})")
    if "at_s" not in data:
        fail(f"{key}.at_s", None, "missing: when the action runs, in seconds from run start")
    kind = kinds[action]
    common = from_dict(Common, {k: data[k] for k in COMMON if k in data}, key)
    params = from_dict(kind.Params, {k: v for k, v in data.items() if k not in COMMON}, key)
    check_range(f"{key}.at_s", common.at_s, 0)
    if common.for_s is not None:
        check_range(f"{key}.for_s", common.for_s, 0)
        if kind.inverse is None:
            fail(f"{key}.for_s", common.for_s, f"action {action!r} has no inverse")
    return FaultAction(common.at_s, action, common.target, common.for_s, params)


@dataclass
class FaultsConfig:
    actions: list[FaultAction] = field(default_factory=list)

    @classmethod
    def parse(cls, data: Any, key: str = "faults") -> FaultsConfig:
        data = {} if data is None else data
        if not isinstance(data, dict):
            fail(key, data, "must be a mapping with `actions`")
        for k in data:
            if k != "actions":
                fail(f"{key}.{k}", data[k], "unknown key (known: actions)")
        actions = data.get("actions") or []
        if not isinstance(actions, list):
            fail(f"{key}.actions", actions, "must be a list")
        return cls([parse_action(a, f"{key}.actions[{i}]") for i, a in enumerate(actions)])

    def check_against(self, topo: Topology, key: str = "faults") -> None:
        """References to unknown nodes or links are config errors."""
        nodes = {n.name for n in topo.nodes}
        links = {lk.name for lk in topo.links}
        for i, a in enumerate(self.actions):
            k = f"{key}.actions[{i}]"
            if a.kind.target in ("node", "sensor") and a.target not in nodes:
                fail(f"{k}.target", a.target, "unknown node")
            if a.kind.target == "link" and a.target not in links:
                fail(f"{k}.target", a.target, f"unknown link (links: {', '.join(sorted(links))})")
            a.kind.check(a, topo, k)

    def check_sensors(self, sensors: list[str] | None, key: str = "faults") -> None:
        """Sensor faults target a node that runs a sensor of the workload."""
        for i, a in enumerate(self.actions):
            if a.kind.target == "sensor" and (sensors is None or a.target not in sensors):
                fail(f"{key}.actions[{i}].target", a.target,
                     "not a sensor of the workload" if sensors else "needs a workload")

    def schedule(self) -> list[FaultAction]:
        """All actions with `for_s` expanded into their inverse, in time order (stable)."""
        out = []
        for a in self.actions:
            out.append(a)
            if a.for_s is not None:
                inverse = registry()[a.kind.inverse]
                names = {f.name for f in dataclasses.fields(inverse.Params)}
                carried = {k: v for k, v in dataclasses.asdict(a.params).items() if k in names}
                out.append(FaultAction(a.at_s + a.for_s, inverse.name, a.target, None,
                                       inverse.Params(**carried)))
        return sorted(out, key=lambda a: a.at_s)

    def first_fault_s(self) -> float | None:
        """When the first fault strikes (restorations are not faults)."""
        starts = [a.at_s for a in self.schedule() if not a.kind.restores]
        return min(starts) if starts else None
