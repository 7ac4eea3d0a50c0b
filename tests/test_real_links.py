"""Real links (`real: true`): the network between two hosts is the link, carried and
measured, never shaped; every way to ask for one that cannot be is bad input."""

from __future__ import annotations

import pytest

from harness.core.config import ConfigError, LinkProps
from harness.emulation.topology import Link, Node, Topology
from tests.helpers import exp_for, harness_cmd

HOSTS = ["hosts=emulated", "hosts.n=2",
         "hosts.place={s1: h1, s2: h1, d1: h1, e1: h2, e2: h2, c1: h2}"]
SPLIT = ["topology=device_edge_cloud", "workload=digits", *HOSTS]


def test_a_real_link_is_not_shaped_whatever_the_network_says() -> None:
    base = LinkProps(bw_mbit=10.0, delay_ms=5.0, jitter_ms=1.0, loss_pct=1.0, queue_pkts=77)
    assert Link("a", "b", real=True).shaped_props(base) == LinkProps(0.0, 0.0, 0.0, 0.0, 77)
    assert Link("a", "b").shaped_props(base) == base


def test_a_link_named_real_drops_its_tiers_properties() -> None:
    exp = exp_for(*SPLIT, "topology.device_edge_link.delay_ms=7",
                  "topology.links={d1-e1: {real: true}}")
    real = exp.topology.link("d1-e1")
    assert real.real and real.props == LinkProps()
    other = exp.topology.link("d1-e2")
    assert not other.real and other.props.delay_ms == 7


@pytest.mark.parametrize(("overrides", "line"), [
    ([*HOSTS, "topology.links={d1-e1: {real: true, delay_ms: 3}}"],
     "config error: topology.links.d1-e1.real=True: a real link is not shaped: drop delay_ms"),
    ([*HOSTS, "topology.links={d1-e1: {real: yes}}"],
     "config error: topology.links.d1-e1.real='yes': must be true or false"),
    (["topology.links={d1-e1: {real: true}}"],  # hosts=local
     "config error: topology.links.d1-e1.real=True: a real link is the network between two "
     "hosts (hosts=emulated or hosts=ray)"),
    ([*HOSTS, "topology.links={e1-c1: {real: true}}"],
     "config error: topology.links.e1-c1.real=True: both ends are on host h2: a real link is "
     "the network between two hosts (place them apart with hosts.place)"),
    ([*HOSTS, "topology.links={d1-e1: {real: true}}", "faults=bandwidth_collapse"],
     "config error: faults.actions[0].target='d1-e1': a real link is not shaped: degrade an "
     "emulated one (link_down and partitions act on real links too)"),
])
def test_a_real_link_that_cannot_be_is_bad_input(overrides: list[str], line: str) -> None:
    p = harness_cmd("topology=device_edge_cloud", "workload=digits", *overrides)
    assert p.returncode == 2, p.stdout[-500:] + p.stderr[-500:]
    assert p.stderr.strip().splitlines() == [line]


def test_a_declared_real_link_takes_no_properties() -> None:
    topo = Topology("t", [Node("a"), Node("b")],
                    [Link("a", "b", props=LinkProps(delay_ms=2.0), real=True)])
    with pytest.raises(ConfigError) as e:
        topo.validate()
    assert str(e.value) == ("topology.links[0].real=True: a real link is not shaped: it takes "
                            "no properties or traces (the hosts' network is what it is)")
