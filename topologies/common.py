"""Helpers shared by the builders: parameter checks and link override parsing."""

from __future__ import annotations

from typing import Any

from harness.core.config import LinkProps, check_range, fail, from_dict


def count(key: str, value: int, lo: int, hi: int = 250) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        from harness.core.config import fail

        fail(f"topology.{key}", value, "must be an integer")
    check_range(f"topology.{key}", value, lo, hi)
    return value


def props(key: str, value: Any) -> LinkProps:
    """A tier's link properties from config (a mapping of LinkProps fields)."""
    return from_dict(LinkProps, dict(value or {}), f"topology.{key}")


def override_links(links: list, overrides: dict[str, Any] | None) -> None:
    """`topology.links`: properties of single links by name, over their tier's."""
    by_name = {lk.name: lk for lk in links}
    for name, override in dict(overrides or {}).items():
        if not isinstance(override, dict):
            fail(f"topology.links.{name}", override, "a mapping of link properties")
        if name not in by_name:
            fail(f"topology.links.{name}", override, f"unknown link (links: "
                                                    f"{', '.join(sorted(by_name))})")
        override = dict(override)
        real = override.pop("real", False)
        if not isinstance(real, bool):
            fail(f"topology.links.{name}.real", real, "must be true or false")
        if real:  # the hosts' network: none of its tier's
            if override:
                fail(f"topology.links.{name}.real", True, "a real link is not shaped: "
                     f"drop {', '.join(sorted(override))}")
            by_name[name].real, by_name[name].props = True, LinkProps()
            continue
        by_name[name].props = props(f"links.{name}", override).over(by_name[name].props)


def override_nodes(nodes: list, overrides: dict[str, Any] | None) -> None:
    """`topology.nodes`: `cpu` and `mem_mb` of single nodes by name, over their tier's."""
    by_name = {n.name: n for n in nodes}
    for name, override in dict(overrides or {}).items():
        if name not in by_name or not isinstance(override, dict):
            fail(f"topology.nodes.{name}", override,
                 "a mapping of cpu, mem_mb" if name in by_name else
                 f"unknown node (nodes: {', '.join(by_name)})")
        for key, value in override.items():
            if key == "cpu" and isinstance(value, int | float) and not isinstance(value, bool) \
                    and 0 <= value <= 1024:
                by_name[name].cpu = float(value)
            elif key == "mem_mb":
                by_name[name].mem_mb = count(f"nodes.{name}.mem_mb", value, 0, 10**7)
            else:
                fail(f"topology.nodes.{name}.{key}", value, "cpu (cores, 0 = unlimited) or "
                                                            "mem_mb (0 = unlimited)")
