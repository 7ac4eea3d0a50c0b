"""A fleet: many devices per edge server, each device with its own camera.

The shape of a deployment at scale (a fleet of cameras or vehicles, each with an
on-board accelerator, homed on the edge server of its site), built to run one
stage instance per device (`pipeline=fleet`) and find out what 100+ stage
processes cost on one machine. Device d<k> is homed on edge e<ceil(k / per edge)>
and has sensor s<k>, so names mean what they mean in the other topologies
(`d1-e1`, `s2`, `e1`) and their fault schedules apply unchanged. Edge servers
reach each other only through the cloud (a WAN), not directly.
"""

from __future__ import annotations

from typing import Any

from harness.core.config import check_range, fail
from harness.emulation.topology import Link, Node, Topology
from topologies.common import count, props

MAX_DEVICES = 500  # 2 nodes and 2 links each; this machine runs ~100 stages, not thousands


def build(
    n_edges: int = 2,
    devices_per_edge: int = 50,
    cloud: bool = True,
    device_cpu: float = 0.0,
    edge_cpu: float = 0.0,
    device_mem_mb: int = 0,
    edge_mem_mb: int = 0,
    sensor_link: dict[str, Any] | None = None,
    device_edge_link: dict[str, Any] | None = None,
    edge_cloud_link: dict[str, Any] | None = None,
) -> Topology:
    count("n_edges", n_edges, 1, 50)
    count("devices_per_edge", devices_per_edge, 1, MAX_DEVICES)
    if n_edges * devices_per_edge > MAX_DEVICES:
        fail("topology.devices_per_edge", devices_per_edge,
             f"n_edges x devices_per_edge must be <= {MAX_DEVICES} (n_edges={n_edges})")
    if not isinstance(cloud, bool):
        fail("topology.cloud", cloud, "must be true or false")
    if not cloud and n_edges > 1:
        fail("topology.cloud", cloud, "edge servers reach each other through the cloud: "
                                      "n_edges > 1 needs cloud=true")
    count("device_mem_mb", device_mem_mb, 0, 10**7)
    count("edge_mem_mb", edge_mem_mb, 0, 10**7)
    for key, cores in (("device_cpu", device_cpu), ("edge_cpu", edge_cpu)):
        if isinstance(cores, bool) or not isinstance(cores, int | float):
            fail(f"topology.{key}", cores, "must be a number of cores (0 = unlimited)")
        check_range(f"topology.{key}", cores, 0, 1024)
    edges = [Node(f"e{j + 1}", "edge", cpu=edge_cpu, mem_mb=edge_mem_mb)
             for j in range(n_edges)]
    nodes: list[Node] = list(edges)
    links: list[Link] = []
    if cloud:
        nodes.append(Node("c1", "cloud"))
        links += [Link(e.name, "c1", props=props("edge_cloud_link", edge_cloud_link))
                  for e in edges]
    devices, sensors = [], []
    for j, e in enumerate(edges):
        for i in range(devices_per_edge):
            k = j * devices_per_edge + i + 1
            devices.append(Node(f"d{k}", "device", cpu=device_cpu, mem_mb=device_mem_mb))
            sensors.append(Node(f"s{k}", "sensor"))
            links.append(Link(f"d{k}", e.name,
                              props=props("device_edge_link", device_edge_link)))
            links.append(Link(f"s{k}", f"d{k}", props=props("sensor_link", sensor_link)))
    return Topology("fleet", nodes + devices + sensors, links)
