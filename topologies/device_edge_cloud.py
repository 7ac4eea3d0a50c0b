"""Sensors -> end devices -> edge servers -> cloud: the collaborative-inference seed.

Every device reaches every edge server (so a device can fail over between
edges), edge servers are joined to each other (edge-edge collaboration) and to
the cloud, and each device has its own uplink to the cloud (a WAN path that
does not depend on any one edge server).
"""

from __future__ import annotations

from typing import Any

from harness.emulation.topology import Link, Node, Topology
from topologies.common import count, override_links, override_nodes, props


def build(
    n_sensors: int = 2,
    n_devices: int = 1,
    n_edges: int = 2,
    device_cloud: bool = True,
    device_cpu: float = 0.0,
    edge_cpu: float = 0.0,
    device_mem_mb: int = 0,
    edge_mem_mb: int = 0,
    device_gpus: int | str = 0,
    edge_gpus: int | str = 0,
    cloud_gpus: int | str = 0,
    sensor_link: dict[str, Any] | None = None,
    device_edge_link: dict[str, Any] | None = None,
    edge_edge_link: dict[str, Any] | None = None,
    edge_cloud_link: dict[str, Any] | None = None,
    device_cloud_link: dict[str, Any] | None = None,
    links: dict[str, dict[str, Any]] | None = None,
    nodes: dict[str, dict[str, Any]] | None = None,
) -> Topology:
    """`links`: per-link overrides by name over the tier's, e.g. {d1-e2: {delay_ms: 15}}
    (one replica's path slower than the primary's); `nodes`: per-node `cpu` and `mem_mb`
    over the tier's, e.g. {e2: {mem_mb: 64}} (edges of different sizes)."""
    count("n_sensors", n_sensors, 0)
    count("n_devices", n_devices, 1)
    count("n_edges", n_edges, 2)
    count("device_mem_mb", device_mem_mb, 0, 10**7)
    count("edge_mem_mb", edge_mem_mb, 0, 10**7)
    sensors = [Node(f"s{i + 1}", "sensor") for i in range(n_sensors)]
    devices = [Node(f"d{i + 1}", "device", cpu=device_cpu, mem_mb=device_mem_mb,
                    gpus=device_gpus)
               for i in range(n_devices)]
    edges = [Node(f"e{i + 1}", "edge", cpu=edge_cpu, mem_mb=edge_mem_mb, gpus=edge_gpus)
             for i in range(n_edges)]
    cloud = Node("c1", "cloud", gpus=cloud_gpus)
    wires: list[Link] = []
    for i, s in enumerate(sensors):
        wires.append(Link(s.name, devices[i % n_devices].name,
                          props=props("sensor_link", sensor_link)))
    for d in devices:
        for e in edges:
            wires.append(Link(d.name, e.name, props=props("device_edge_link", device_edge_link)))
    for i, e in enumerate(edges):
        for f in edges[i + 1:]:
            wires.append(Link(e.name, f.name, props=props("edge_edge_link", edge_edge_link)))
    for e in edges:
        wires.append(Link(e.name, cloud.name, props=props("edge_cloud_link", edge_cloud_link)))
    if device_cloud:
        for d in devices:
            wires.append(Link(d.name, cloud.name,
                              props=props("device_cloud_link", device_cloud_link)))
    all_nodes = sensors + devices + edges + [cloud]
    override_links(wires, links)
    override_nodes(all_nodes, nodes)
    return Topology("device_edge_cloud", all_nodes, wires)
