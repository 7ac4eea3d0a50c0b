"""Placing topology nodes on hosts (worked out by hand)."""

from __future__ import annotations

import pytest

from harness.core.config import ConfigError
from harness.emulation.topology import Link, Node, Topology
from harness.hosts.config import HostsConfig
from harness.hosts.placer import HostInfo, place
from tests.helpers import harness_cmd

TWO = [HostInfo("h1", cpus=2, mem_mb=4096), HostInfo("h2", cpus=2, mem_mb=4096)]


def chain(*nodes: Node) -> Topology:
    links = [Link(a.name, b.name) for a, b in zip(nodes, nodes[1:], strict=False)]
    topo = Topology("t", list(nodes), links)
    topo.validate()
    return topo


def test_a_chain_is_cut_once_into_equal_shares() -> None:
    # a pinned to h1; b joins it (no cross link); h1 then holds its share (2 of 4), so c
    # goes to h2 (one cross link, b-c) and d follows c (none)
    topo = chain(Node("a"), Node("b"), Node("c"), Node("d"))
    p = place(topo, TWO, {"a": "h1"})
    assert p.host_of == {"a": "h1", "b": "h1", "c": "h2", "d": "h2"}
    assert p.cross_links == ["b-c"]
    assert p.why["a"] == "pinned by hosts.place"
    assert p.why["c"] == "adds 1 cross-host link, load 0 nodes"
    assert p.why["d"] == "adds 0 cross-host links, load 1 node"


def test_the_answer_does_not_depend_on_the_order_of_links() -> None:
    topo = chain(Node("a"), Node("b"), Node("c"), Node("d"))
    flipped = Topology("t", topo.nodes, list(reversed(topo.links)))
    assert place(flipped, TWO, {"a": "h1"}).host_of == place(topo, TWO, {"a": "h1"}).host_of


def test_gpu_nodes_go_where_the_gpus_are() -> None:
    hosts = [HostInfo("h1"), HostInfo("h2", gpus=1)]
    topo = chain(Node("a"), Node("g", gpus=1))
    p = place(topo, hosts, {"a": "h1"})
    assert p.host_of["g"] == "h2" and p.why["g"].startswith("has GPUs, fits (1 of 2 hosts)")
    with pytest.raises(ConfigError) as e:
        place(topo, hosts, {"g": "h1"})
    assert str(e.value) == "hosts.place.g='h1': does not fit there: needs gpus=1, has 0"
    with pytest.raises(ConfigError) as e:
        place(topo, [HostInfo("h1"), HostInfo("h2")], {})
    assert str(e.value) == ("topology.nodes[1]='g': fits on no host (h1: needs gpus=1, has 0; "
                            "h2: needs gpus=1, has 0)")


def test_budgets_split_nodes_that_would_rather_share_a_host() -> None:
    # 1.5 + 1.5 cores do not fit a 2-core host: the link is cut although no share forces it
    topo = chain(Node("a", cpu=1.5), Node("b", cpu=1.5))
    p = place(topo, [HostInfo("h1", cpus=2), HostInfo("h2", cpus=2)], {"a": "h1"})
    assert p.host_of == {"a": "h1", "b": "h2"} and p.cross_links == ["a-b"]
    with pytest.raises(ConfigError) as e:
        place(chain(Node("a", mem_mb=5000)), TWO, {})
    assert "topology.nodes[0]='a': fits on no host (h1: mem_mb 5000 > 4096 left" in str(e.value)


def test_unknown_names_are_one_line_naming_the_key() -> None:
    topo = chain(Node("a"), Node("b"))
    with pytest.raises(ConfigError) as e:
        place(topo, TWO, {"a": "h9"})
    assert str(e.value) == "hosts.place.a='h9': unknown host (hosts: h1, h2)"
    with pytest.raises(ConfigError) as e:
        place(topo, TWO, {"zz": "h1"})
    assert str(e.value) == "hosts.place.zz='h1': unknown node (nodes: a, b)"


def test_hosts_config_checks_its_keys() -> None:
    HostsConfig(kind="emulated", n=3, place={"d1": "h1"}).validate("hosts")
    for cfg, msg in [
        (HostsConfig(kind="cluster"), "hosts.kind='cluster': one of local, emulated, ray"),
        (HostsConfig(kind="emulated", lan_mtu=600), "hosts.lan_mtu=600"),
        (HostsConfig(kind="local", place={"d1": "h1"}), "hosts.place.d1='h1': hosts=local"),
    ]:
        with pytest.raises(ConfigError) as e:
            cfg.validate("hosts")
        assert str(e.value).startswith(msg), str(e.value)
    assert HostsConfig(lan_mtu=1500).tunnel_mtu == 1450


@pytest.mark.parametrize(("overrides", "line"), [
    (["hosts=emulated", "hosts.place={d1: h9}"],
     "config error: hosts.place.d1='h9': unknown host (hosts: h1, h2, h3)"),
    (["hosts=emulated", "hosts.n=2", "hosts.place={zz: h1}"],
     "config error: hosts.place.zz='h1': unknown node (nodes: c1, d1, e1, e2, s1, s2)"),
    (["hosts.place={d1: h1}"], "config error: hosts.place.d1='h1': hosts=local runs every "
     "node here (hosts=emulated or hosts=ray place them)"),
    # nothing listens there: said at once (ray.init would retry for minutes)
    (["hosts=ray", "hosts.address=127.0.0.1:1"],
     "config error: hosts.address='127.0.0.1:1': no Ray cluster there (Connection refused)"),
])
def test_bad_hosts_input_is_one_line_exit_2(overrides: list[str], line: str) -> None:
    p = harness_cmd("topology=device_edge_cloud", "workload=digits", *overrides)
    assert (p.returncode, p.stderr.strip().splitlines()) == (2, [line])


def test_trees_hanging_off_the_core_stay_whole_and_the_cut_is_the_mesh() -> None:
    """edge_mesh, 10 edges fully meshed, 5 devices each with 3 sensors (210 nodes): two
    hosts of 105 take 5 edges with their whole trees each (21 nodes an edge), so the only
    links carried are the mesh's between the halves, 5 x 5 = 25. Breadth first from e1
    filled h1 with the 10 edges, the 50 devices and 45 sensors: 105 sensor links carried."""
    from topologies.edge_mesh import build

    topo = build(n_edges=10, devices_per_edge=5, sensors_per_device=3)
    p = place(topo, [HostInfo("h1"), HostInfo("h2")], {})
    assert len(p.cross_links) == 25
    assert all(lk.split("-")[0][0] == "e" == lk.split("-")[1][0] for lk in p.cross_links)
    assert len(p.nodes_on("h1")) == len(p.nodes_on("h2")) == 105
