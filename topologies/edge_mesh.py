"""Edge servers in a full mesh, each serving its own devices and their sensors.

The setting for edge-edge collaboration and for re-placing work on a
neighbouring edge server when one fails.
"""

from __future__ import annotations

from typing import Any

from harness.emulation.topology import Link, Node, Topology
from topologies.common import count, props


def build(
    n_edges: int = 3,
    devices_per_edge: int = 1,
    sensors_per_device: int = 1,
    access_link: dict[str, Any] | None = None,
    mesh_link: dict[str, Any] | None = None,
) -> Topology:
    count("n_edges", n_edges, 2)
    count("devices_per_edge", devices_per_edge, 0)
    count("sensors_per_device", sensors_per_device, 0)
    nodes: list[Node] = []
    links: list[Link] = []
    edges = [Node(f"e{i + 1}", "edge") for i in range(n_edges)]
    nodes += edges
    for i, e in enumerate(edges):
        for f in edges[i + 1:]:
            links.append(Link(e.name, f.name, props=props("mesh_link", mesh_link)))
    nd = ns = 0
    for e in edges:
        for _ in range(devices_per_edge):
            nd += 1
            d = Node(f"d{nd}", "device")
            nodes.append(d)
            links.append(Link(d.name, e.name, props=props("access_link", access_link)))
            for _ in range(sensors_per_device):
                ns += 1
                s = Node(f"s{ns}", "sensor")
                nodes.append(s)
                links.append(Link(s.name, d.name, props=props("access_link", access_link)))
    return Topology("edge_mesh", nodes, links)
