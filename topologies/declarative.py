"""A topology written out in YAML: lists of nodes and links, for users' own setups."""

from __future__ import annotations

from typing import Any

from harness.core.config import from_dict
from harness.emulation.topology import Link, Node, Topology


def build(name: str = "custom", nodes: list[Any] | None = None,
          links: list[Any] | None = None) -> Topology:
    return Topology(
        name=name,
        nodes=[from_dict(Node, dict(n), f"topology.nodes[{i}]")
               for i, n in enumerate(nodes or [])],
        links=[from_dict(Link, dict(lk), f"topology.links[{i}]")
               for i, lk in enumerate(links or [])],
    )
