"""Topologies are pure data: names, addresses, MACs, routes and setup scripts, no root."""

from __future__ import annotations

import pytest

from harness.core.config import ConfigError, LinkProps
from harness.emulation.network import LinkState, setup_script
from harness.emulation.tc import DirState
from harness.emulation.topology import Link, Node, Topology
from tests.helpers import exp_for


def dec(n_sensors: int = 14, n_devices: int = 2, n_edges: int = 3) -> Topology:
    return exp_for("topology=device_edge_cloud", f"topology.n_sensors={n_sensors}",
                   f"topology.n_devices={n_devices}", f"topology.n_edges={n_edges}").topology


def test_device_edge_cloud_shape() -> None:
    t = dec()
    roles = [n.role for n in t.nodes]
    assert len(t.nodes) == 20
    assert roles.count("sensor") == 14 and roles.count("edge") == 3
    assert roles.count("cloud") == 1 and roles.count("device") == 2
    # each device reaches every edge, each edge the cloud
    for d in ("d1", "d2"):
        for e in ("e1", "e2", "e3"):
            assert t.find_link(d, e)
    assert all(t.find_link(e, "c1") for e in ("e1", "e2", "e3"))


def test_device_edge_cloud_resources_per_tier() -> None:
    t = exp_for("topology=device_edge_cloud", "topology.edge_cpu=0.5", "topology.edge_mem_mb=512",
                "topology.device_mem_mb=256").topology
    assert {(n.name, n.cpu, n.mem_mb) for n in t.nodes if n.role in ("device", "edge")} == {
        ("d1", 0.0, 256), ("e1", 0.5, 512), ("e2", 0.5, 512)}
    assert t.node("c1").mem_mb == 0 and t.node("s1").mem_mb == 0
    with pytest.raises(ConfigError, match=r"^topology.edge_mem_mb=-1"):
        exp_for("topology=device_edge_cloud", "topology.edge_mem_mb=-1")


def test_names_fit_linux_limits_and_are_unique() -> None:
    t = dec()
    devs = t.interfaces()
    assert all(len(d) <= 15 for d in devs.values())
    for node in t.nodes:
        mine = [d for (n, _), d in devs.items() if n == node.name]
        assert len(mine) == len(set(mine))
    macs = list(t.macs().values())
    assert len(macs) == len(set(macs))
    assert all(int(m.split(":")[0], 16) & 2 for m in macs)  # locally administered


def test_routes_follow_least_delay() -> None:
    t = Topology("tri", [Node("a"), Node("b"), Node("c")], [
        Link("a", "b", props=LinkProps(delay_ms=1)),
        Link("b", "c", props=LinkProps(delay_ms=1)),
        Link("a", "c", props=LinkProps(delay_ms=10)),
    ])
    t.validate()
    assert t.next_hops("a", LinkProps(delay_ms=0)) == {"b": "b", "c": "b"}
    t.links[2].props.delay_ms = 1
    assert t.next_hops("a", LinkProps(delay_ms=0))["c"] == "c"


def test_every_node_reaches_every_other() -> None:
    t = dec()
    base = LinkProps(delay_ms=0)
    names = {n.name for n in t.nodes}
    for n in names:
        assert set(t.next_hops(n, base)) == names - {n}


@pytest.mark.parametrize("nodes,links,key", [
    ([Node("a"), Node("a")], [], "topology.nodes[1].name"),
    ([Node("a", role="fridge")], [], "topology.nodes[0].role"),
    ([Node("a"), Node("b")], [Link("a", "z")], "topology.links[0].b"),
    ([Node("a"), Node("b")], [Link("a", "b", props=LinkProps(loss_pct=101))],
     "topology.links[0].loss_pct"),
    ([Node("a"), Node("b")], [Link("a", "b"), Link("b", "a")], "topology.links[1]"),
    ([Node("averyverylongname")], [], "topology.nodes[0].name"),
])
def test_invalid_topologies(nodes, links, key) -> None:
    with pytest.raises(ConfigError) as e:
        Topology("t", nodes, links).validate()
    assert str(e.value).startswith(key)


def test_setup_script_configures_addresses_routes_and_shaping() -> None:
    t = dec(2, 1, 2)
    base = LinkProps(bw_mbit=0, delay_ms=1, jitter_ms=0, loss_pct=0, queue_pkts=100)
    states = {}
    for i, lk in enumerate(t.links):
        p = lk.props.over(base)
        states[lk.name] = LinkState(lk, i, *[t.interfaces()[(e, lk.name)] for e in (lk.a, lk.b)],
                                    DirState(p), DirState(p), p)
    script = setup_script("e1", t, base, False, states)
    ip = t.addresses()["e1"]
    assert f"addr add {ip}/32 dev e1-eth0" in script
    assert "net.ipv4.ip_forward=1" in script
    assert "nud permanent" in script
    assert "tso off gso off gro off tx off" in script
    s1 = t.addresses()["s1"]
    assert f"route replace {s1}/32 via {t.addresses()['d1']}" in script
    assert "htb" in script and "pfifo limit 100" in script
