"""Helpers shared by the builders: parameter checks and link override parsing."""

from __future__ import annotations

from typing import Any

from harness.core.config import LinkProps, check_range, from_dict


def count(key: str, value: int, lo: int, hi: int = 250) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        from harness.core.config import fail

        fail(f"topology.{key}", value, "must be an integer")
    check_range(f"topology.{key}", value, lo, hi)
    return value


def props(key: str, value: Any) -> LinkProps:
    """A tier's link properties from config (a mapping of LinkProps fields)."""
    return from_dict(LinkProps, dict(value or {}), f"topology.{key}")
