"""What a fault kind is, and the registry that finds every kind.

One `Fault` subclass per action (crash, restore, link_down, ...): its own
parameters (a dataclass checked by `from_dict`, so a wrong or unknown key is a
one-line ConfigError), what it targets, how it is applied, and which action
undoes it. Kinds live in `harness/faults/kinds/`, one module per family; every
module there is discovered, so adding a fault is adding one module (plus a
`conf/faults/*.yaml` that uses it).
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from harness.emulation.topology import Topology
    from harness.faults.injector import FaultInjector
    from harness.faults.schedule import FaultAction

TARGETS = ("node", "link", "sensor", None)  # None: the kind names its nodes itself (groups)


@dataclass
class NoParams:
    """A fault kind without parameters of its own."""


class Fault(ABC):
    name: ClassVar[str]  # the `action` string in a fault schedule
    inverse: ClassVar[str | None] = None  # the action that undoes it (`for_s` schedules it)
    restores: ClassVar[bool] = False  # a restoration, not a fault (MTTD/MTTR count from faults)
    target: ClassVar[str | None] = "node"
    Params: ClassVar[type] = NoParams

    def check(self, action: FaultAction, topo: Topology, key: str) -> None:  # noqa: B027
        """Checks against the topology beyond the target's existence (ConfigError)."""

    @abstractmethod
    def apply(self, ctx: FaultInjector, action: FaultAction) -> dict[str, Any]:
        """Do it; returns the event's detail. An exception makes the run INVALID."""


_REGISTRY: dict[str, Fault] = {}


def registry() -> dict[str, Fault]:
    """Every fault kind by action name, from the modules of `harness.faults.kinds`."""
    if not _REGISTRY:
        from harness.faults import kinds

        found: dict[str, Fault] = {}
        for info in sorted(pkgutil.iter_modules(kinds.__path__), key=lambda i: i.name):
            module = importlib.import_module(f"{kinds.__name__}.{info.name}")
            for obj in vars(module).values():
                if (isinstance(obj, type) and issubclass(obj, Fault) and obj is not Fault
                        and obj.__module__ == module.__name__ and "name" in vars(obj)):
                    if obj.name in found:
                        other = type(found[obj.name]).__module__
                        raise RuntimeError(f"fault {obj.name!r} defined twice "
                                           f"({other}, {module.__name__})")
                    if obj.target not in TARGETS:
                        raise RuntimeError(f"fault {obj.name!r}: target {obj.target!r}")
                    found[obj.name] = obj()
        for kind in found.values():
            if kind.inverse is not None and kind.inverse not in found:
                raise RuntimeError(f"fault {kind.name!r}: inverse {kind.inverse!r} is no fault")
        _REGISTRY.update(found)
    return _REGISTRY


def forget() -> None:
    """Discover the kinds again on the next `registry()` (for tests that add one)."""
    _REGISTRY.clear()
