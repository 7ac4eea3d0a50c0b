"""The forwarding policies a route may name, by name: the pipeline's own and every technique's.

A route names its policy (`ordered`, `hedge`, `fallback`, `plan`, ...). The pipeline's
own is in forwarding.py; a technique's lives with the technique, in
`harness/techniques/<name>/node/`, and registers itself here when its module is
imported (`@register`). Nothing lists them: a name not registered yet is looked for by
import path, once per process -- every module of the techniques' `node/` folders is
imported, as the fault kinds are found -- so a stage started with (or later given) a
route naming a technique's policy loads that technique's in-node part then. This
module imports nothing of the harness: the pipeline does not depend on its techniques,
they plug into it.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import threading
from typing import Any

OWN = "harness.pipeline.node.forwarding"  # the pipeline's own policies
TECHNIQUES = "harness.techniques"  # each technique package's `node/` holds its in-node part

_REGISTRY: dict[str, Any] = {}
_lock = threading.RLock()
_searched = False


def register(cls: Any) -> Any:
    """Class decorator: a `forwarding.Policy` subclass, under its `name`."""
    with _lock:
        other = _REGISTRY.get(cls.name)
        if other is not None and other is not cls:
            raise RuntimeError(f"policy {cls.name!r} defined twice ({other.__module__}, "
                               f"{cls.__module__})")
        _REGISTRY[cls.name] = cls
    return cls


def find(name: str) -> Any:
    """The policy class named `name`; ValueError (one line, naming the known ones) if no
    module of the pipeline or of a technique's node part registers it."""
    if name not in _REGISTRY:
        importlib.import_module(OWN)  # the pipeline's own, without looking further
    if name not in _REGISTRY:
        discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"route.policy={name!r}: one of {', '.join(sorted(_REGISTRY))}"
                         ) from None


def discover() -> dict[str, Any]:
    """Import the pipeline's own policies and every technique's in-node modules (once);
    every policy by name."""
    global _searched
    with _lock:
        if not _searched:
            importlib.import_module(OWN)
            for module in technique_node_modules():
                importlib.import_module(module)
            _searched = True
    return dict(_REGISTRY)


def technique_node_modules() -> list[str]:
    """`harness.techniques.<name>.node.<module>` for every technique package with a node
    part (importing a technique's package, not the technique: its `__init__` is light)."""
    out = []
    pkg = importlib.import_module(TECHNIQUES)
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if not info.ispkg:
            continue
        spec = importlib.util.find_spec(f"{TECHNIQUES}.{info.name}.node")
        if spec is None or not spec.submodule_search_locations:
            continue
        for mod in sorted(pkgutil.iter_modules(spec.submodule_search_locations),
                          key=lambda i: i.name):
            out.append(f"{TECHNIQUES}.{info.name}.node.{mod.name}")
    return out
