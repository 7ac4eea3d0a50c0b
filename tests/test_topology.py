"""Topologies are pure data: names, addresses, MACs, routes and set-up batches, no root."""

from __future__ import annotations

import ipaddress

import pytest

from harness.core.config import ConfigError, LinkProps
from harness.emulation.shapers.netem import NetemShaper
from harness.emulation.shapers.userspace import UserspaceShaper
from harness.emulation.tc import DirState, EmulationError
from harness.emulation.topology import Link, Node, Topology
from harness.emulation.wiring import Wiring, batch, cover
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


def _dirs(t: Topology, base: LinkProps) -> dict[str, tuple[DirState, DirState]]:
    return {lk.name: (DirState(lk.props.over(base)), DirState(lk.props.over(base)))
            for lk in t.links}


def test_node_setup_configures_addresses_routes_and_shaping() -> None:
    t = dec(2, 1, 2)
    base = LinkProps(bw_mbit=0, delay_ms=1, jitter_ms=0, loss_pct=0, queue_pkts=100)
    s = Wiring(t, base).node("e1", False, _dirs(t, base), "reno")
    ip_text, tc_text = batch(s.ip), batch(s.tc)
    ip = t.addresses()["e1"]
    assert ip_text.startswith("link set lo up\n")
    assert f"addr add {ip}/32 dev e1-eth0\n" in ip_text
    assert "nud permanent" in ip_text
    assert s.sysctls["net.ipv4.ip_forward"] == "1"
    assert s.sysctls["net.ipv4.tcp_congestion_control"] == "reno"
    assert sorted(s.plain) == sorted(d for (n, _), d in t.interfaces().items() if n == "e1")
    # s1 hangs off d1, e1's neighbour: its address is routed via d1 (a /32 or a prefix)
    routes = [c for c in s.ip if c[0] == "route"]
    assert all(c[-1] == "onlink" for c in routes if "via" in c)
    assert f"route replace {t.addresses()['d1']}/32 dev" in ip_text
    assert "htb" in tc_text and "pfifo limit 100" in tc_text
    assert "sh" not in ip_text.split() and ";" not in ip_text + tc_text


def _lpm(routes: list[list[str]], addr: str) -> str | None:
    """Next hop (or "direct"/"unreachable") longest-prefix match gives for `addr`."""
    best: tuple[int, str] | None = None
    for r in routes:
        prefix = r[3] if r[2] == "unreachable" else r[2]
        net = ipaddress.ip_network(prefix)
        if ipaddress.ip_address(addr) in net and (best is None or net.prefixlen > best[0]):
            hop = "unreachable" if r[2] == "unreachable" else (
                r[r.index("via") + 1] if "via" in r else "direct")
            best = (net.prefixlen, hop)
    return best[1] if best else None


@pytest.mark.parametrize("topo", ["dec", "mesh", "split", "slow_direct"])
def test_folded_routes_forward_exactly_like_per_destination_routes(topo: str) -> None:
    """A /32 per destination is N² routes; the folded table must send every node's address
    to the same next hop, and match no address that no node has."""
    if topo == "dec":
        t = dec()
    elif topo == "mesh":
        t = exp_for("topology=edge_mesh", "topology.n_edges=4", "topology.devices_per_edge=2",
                    "topology.sensors_per_device=2").topology
    elif topo == "split":  # two islands: nothing may route to the other one
        t = Topology("split", [Node(n) for n in ("a", "b", "c", "x", "y")],
                     [Link("a", "b"), Link("b", "c"), Link("x", "y")])
        t.validate()
    else:  # a neighbour reached faster over two links than over the direct one
        t = Topology("tri", [Node("a"), Node("b"), Node("c")], [
            Link("a", "b", props=LinkProps(delay_ms=1)), Link("b", "c", props=LinkProps(
                delay_ms=1)), Link("a", "c", props=LinkProps(delay_ms=10))])
        t.validate()
        assert t.next_hops("a", LinkProps(delay_ms=1))["c"] == "b"
    base = LinkProps(delay_ms=1)
    w = Wiring(t, base)
    ips = t.addresses()
    n_routes = 0
    for node in t.nodes:
        routes = [c for c in w.node(node.name, False, _dirs(t, base)).ip if c[0] == "route"]
        n_routes += len(routes)
        hops = t.next_hops(node.name, base)
        for dest in t.nodes:
            if dest.name == node.name:
                continue
            got = _lpm(routes, ips[dest.name])
            if dest.name not in hops:
                assert got in (None, "unreachable"), (node.name, dest.name, got)
            elif hops[dest.name] == dest.name:
                assert got == "direct", (node.name, dest.name, got)
            else:
                assert got == ips[hops[dest.name]], (node.name, dest.name, got)
        assert _lpm(routes, "10.0.0.250") is None and _lpm(routes, "10.0.1.1") is None
    if topo == "mesh":
        assert n_routes < len(t.nodes) * (len(t.nodes) - 1) / 2  # per destination: N(N-1)


def test_a_node_on_one_link_takes_its_neighbours_table_as_its_search_would() -> None:
    """Wiring.hops gives a node on one link its neighbour's destinations instead of a
    search; every table equals the search's, on a fleet-like tree (sensors on devices on
    edges), a chain's two ends, and two nodes that only have each other."""
    trees = exp_for("topology=edge_mesh", "topology.n_edges=3", "topology.devices_per_edge=2",
                    "topology.sensors_per_device=2").topology
    chain = Topology("chain", [Node(n) for n in "abcd"],
                     [Link("a", "b"), Link("b", "c"), Link("c", "d")])
    pair = Topology("pair", [Node("x"), Node("y")], [Link("x", "y")])
    base = LinkProps(delay_ms=1)
    for t in (trees, chain, pair):
        t.validate()
        w = Wiring(t, base)
        leaves = [n.name for n in t.nodes if len(w.adj[n.name]) == 1]
        assert leaves, t.name
        for n in t.nodes:
            assert w.hops(n.name) == t.next_hops(n.name, base), (t.name, n.name)
    w = Wiring(chain, base)
    assert w.hops("a") == {"b": "b", "c": "b", "d": "b"}  # by hand


def test_cover_is_exactly_the_node_addresses() -> None:
    for n in (1, 2, 3, 100, 210, 254, 255, 600):
        t = Topology("t", [Node(f"n{i}") for i in range(n)], [])
        got = {str(a) for p in cover(n) for a in ipaddress.ip_network(p)}
        assert got == set(t.addresses().values()), n


def test_veths_are_created_straight_in_their_namespaces() -> None:
    t = Topology("p", [Node("h1"), Node("h2")], [Link("h1", "h2")])
    t.validate()
    w = Wiring(t, LinkProps())
    ns = {"h1": "101", "h2": "102"}
    netem = batch(w.veths(ns, NetemShaper(check=False)))
    assert netem == ("link add name h1-eth0 address 02:48:00:00:00:00 netns 101 type veth "
                     "peer name h2-eth0 address 02:48:00:01:00:00 netns 102\n")
    us = UserspaceShaper()
    us.prefix, us.ns = "hx0a0b0c", "hx0a0b0c-wire"
    assert batch(w.veths(ns, us)).splitlines() == [
        "link add name h1-eth0 address 02:48:00:00:00:00 netns 101 type veth "
        "peer name hx0a0b0c0a netns hx0a0b0c-wire",
        "link add name h2-eth0 address 02:48:00:01:00:00 netns 102 type veth "
        "peer name hx0a0b0c0b netns hx0a0b0c-wire"]


@pytest.mark.parametrize("word", ["a b", "x\nlink del lo", "#", "'q'", "a;b", "$(x)", ""])
def test_batch_refuses_words_that_are_not_one_token(word: str) -> None:
    with pytest.raises(EmulationError):
        batch([["link", "set", word, "up"]])
