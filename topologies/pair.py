"""Two hosts, h1 and h2, joined by one link: the unit of link-fidelity tests."""

from __future__ import annotations

from typing import Any

from harness.emulation.topology import Link, Node, Topology
from topologies.common import props


def build(link: dict[str, Any] | None = None) -> Topology:
    """`link` overrides the network defaults for the single link (usually empty)."""
    return Topology(
        name="pair",
        nodes=[Node("h1"), Node("h2")],
        links=[Link("h1", "h2", props=props("link", link))],
    )
