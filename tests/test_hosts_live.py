"""Emulated hosts on this machine: the shaped LAN, a Ray node per host, agents, clocks
(root)."""

from __future__ import annotations

import contextlib
import ipaddress
import re
import statistics
import subprocess

import pytest

from harness.emulation.ledger import Ledger, leftovers, remove_run
from harness.hosts.config import HostsConfig
from harness.hosts.emulated import EmulatedLan
from tests.helpers import root_only

pytestmark = [pytest.mark.needs_root, root_only]


def rtts_ms(lan: EmulatedLan, src: str, dst: str, n: int = 20) -> list[float]:
    p = subprocess.run(lan.in_host(src, ["ping", "-n", "-c", str(n), "-i", "0.02", "-W", "1",
                                         dst]), capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    return [float(m) for m in re.findall(r"time=([\d.]+) ms", p.stdout)]


def nothing_left(prefix: str) -> None:
    assert not any(leftovers(prefix).values()), leftovers(prefix)


def test_hosts_are_namespaces_a_shaped_lan_apart_and_go_nowhere_else() -> None:
    led = Ledger.new()
    lan = EmulatedLan(HostsConfig(kind="emulated", n=3, lan_delay_ms=4.0), led)
    try:
        lan.start()
        h1, h2, h3 = lan.hosts
        # 4 ms one way between two hosts (2 ms on each host's access): 8 ms round trip;
        # the coordinator is one access away (4 ms round trip). A line 2 ms too long on
        # an access would read 12 and 6.
        across = statistics.median(rtts_ms(lan, "h1", h3.address))
        assert 8.0 <= across <= 9.5, across
        home = statistics.median(rtts_ms(lan, "h2", lan.coordinator))
        assert 4.0 <= home <= 5.5, home
        # no way out: no default route, so an outside address is unreachable at once
        p = subprocess.run(lan.in_host("h1", ["ip", "route", "get", "1.1.1.1"]),
                           capture_output=True, text=True)
        assert p.returncode != 0 and "unreachable" in p.stderr, p.stdout + p.stderr
        assert ipaddress.ip_address(h2.address) in lan.subnet
        assert lan.coordinator == str(list(lan.subnet.hosts())[-1])
    finally:
        lan.stop()
        remove_run(led.prefix)
    nothing_left(led.prefix)


@pytest.fixture(scope="module")
def session():
    """Two emulated hosts (LAN 1 ms one way), a Ray node and an agent each, h2's clock
    250 ms ahead: brought up once for the tests below (about 8 s here)."""
    from harness.hosts.session import HostSession

    led = Ledger.new()
    s = HostSession(HostsConfig(kind="emulated", n=2, lan_delay_ms=1.0,
                                skew_ms={"h2": 250.0}), led)
    try:
        s.start()
        yield s
    finally:
        s.stop()
        remove_run(led.prefix)
    nothing_left(led.prefix)


def test_each_host_runs_a_ray_node_and_an_agent_whose_clock_offset_is_recovered(
        session) -> None:
    import os

    import ray

    s = session
    hello = {h: ray.get(a.hello.remote(), timeout=30) for h, a in s.agents.items()}
    mine = os.readlink("/proc/self/ns/net")
    assert [hello[h]["host"] for h in ("h1", "h2")] == ["h1", "h2"]
    # each agent runs as root inside its own host's namespace, with the LAN address only
    assert len({mine, hello["h1"]["netns"], hello["h2"]["netns"]}) == 3, hello
    for h in ("h1", "h2"):
        assert hello[h]["uid"] == 0  # its LAN legs only: control (lan0) and data (lan1)
        assert hello[h]["addresses"] == [s.lan.host(h).address, s.lan.host(h).data_address]
    # 250 ms injected on h2, none on h1: each recovered within its stated bound (half
    # the best of 8 round trips over Ray and the 1 ms LAN)
    for h, injected in (("h1", 0.0), ("h2", 250.0)):
        o = s.clock[h]
        assert abs(o.offset_ms - injected) <= o.uncertainty_ms, (h, o)
        assert o.uncertainty_ms < 50, o  # not a measurement of nothing


def test_a_link_between_hosts_is_tunnelled_and_shaped_on_each_sending_side(session) -> None:
    import ray

    from harness.core.config import LinkProps, NetworkConfig
    from harness.emulation.topology import Link, Node, Topology

    s = session
    topo = Topology("two", [Node("a"), Node("b")], [Link("a", "b", props=LinkProps(
        delay_ms=5.0))])
    topo.validate()
    try:
        up = s.build(topo, NetworkConfig(), {"_target_": "harness.emulation.backends.mininet."
                                                          "MininetBackend"},
                     {"_target_": "harness.emulation.shapers.userspace.UserspaceShaper"}, 1,
                     {"a": "h1", "b": "h2"})
        assert up["h1"]["nodes"] == ["a"] and up["h2"]["nodes"] == ["b"], up
        agent_a = s.agents["h1"]

        def ping(*args: str) -> str:
            return ray.get(agent_a.node_run.remote("a", ["ping", "-n", *args, "10.0.0.2"]),
                           timeout=60)

        def median_rtt(out: str) -> float:
            return statistics.median(float(m) for m in re.findall(r"time=([\d.]+) ms", out))

        # 5 ms each way on the link, shaped once per direction (h1 sends a -> b, h2 the
        # way back) + 1 ms each way of LAN: 12 ms; shaped twice (both lines) would be 22
        rtt = median_rtt(ping("-c", "20", "-i", "0.02"))
        assert 12.0 <= rtt <= 13.5, rtt
        # the tunnel's MTU is the LAN's less VXLAN's 50 bytes, and the node knows it: a
        # 1450-byte packet passes whole, 1451 is refused at the sender (never fragmented)
        ping("-c", "1", "-M", "do", "-s", str(1450 - 28))
        with pytest.raises(ray.exceptions.RayTaskError) as e:
            ping("-c", "1", "-M", "do", "-s", str(1451 - 28))
        assert "mtu=1450" in str(e.value) or "too long" in str(e.value), str(e.value)[-500:]
        # a runtime change reaches the host that sends that direction: fwd +10 ms
        ray.get(agent_a.emulation.remote("set_link", "a-b", LinkProps(delay_ms=15.0), "fwd"))
        rtt = median_rtt(ping("-c", "20", "-i", "0.02"))
        assert 22.0 <= rtt <= 23.5, rtt
    finally:
        for h in ("h1", "h2"):
            ray.get(s.agents[h].teardown.remote(), timeout=60)


@contextlib.contextmanager
def across(session, link, network):
    """Nodes a (on h1) and b (on h2) joined by `link`, as a run across hosts builds them
    (`SplitEmulation`), up for the block."""
    from harness.emulation.topology import Node, Topology
    from harness.hosts.split import USERSPACE, SplitEmulation

    topo = Topology("two", [Node("a"), Node("b")], [link])
    topo.validate()
    emu = SplitEmulation(topo, network, session, {"a": "h1", "b": "h2"},
                         {"_target_": "harness.emulation.backends.mininet.MininetBackend"},
                         USERSPACE, session.ledger)
    try:
        emu.start()
        yield emu
    finally:
        emu.stop()


def test_fidelity_judges_a_link_between_hosts_with_the_lan_in_it(session) -> None:
    """A 5 ms link from h1 to h2 measures 5 ms plus the LAN's 1 ms one way, and the
    self-check expects exactly that; the same link recorded as 3 ms + LAN (the lines
    2 ms too long) is out of tolerance in every attempt."""
    import dataclasses

    from harness.core.config import FidelityConfig, LinkProps, NetworkConfig
    from harness.emulation.topology import Link
    from harness.measure.live.fidelity import check_links

    cfg = FidelityConfig(enabled=True, probes=30, interval_ms=5, bw_duration_s=0)
    with across(session, Link("a", "b", props=LinkProps(delay_ms=5.0)), NetworkConfig()) as emu:
        right = check_links(emu, cfg)
        st = emu.links["a-b"]
        for d in (st.fwd, st.rev):
            d.props = dataclasses.replace(d.props, delay_ms=3.0)
        wrong = check_links(emu, cfg)
    got = right["links"]["a-b"]["delay_ms"]
    assert right["out_of_tolerance"] == [], right["links"]
    assert got["configured"] == 6.0 and got["of_which_between_hosts"] == 1.0, got
    assert abs(got["measured"] - 6.0) <= cfg.delay_tol_ms, got
    assert wrong["out_of_tolerance"] == ["a-b"], wrong["links"]
    attempts = wrong["links"]["a-b"]["delay_ms"]["attempts"]
    assert len(attempts) == cfg.attempts and all(a["one_way_ms"] >= 5.5 for a in attempts)


def test_a_real_link_between_hosts_is_carried_unshaped_and_measured(session) -> None:
    """`real: true` on a link whose network defaults say 5 ms and 10 Mbit/s: the link is
    the hosts' network (here the emulated LAN, 1 ms one way), so that is what fidelity
    measures and records, with TCP well above the cap it would have had; it is never
    judged out of tolerance."""
    from harness.core.config import FidelityConfig, NetworkConfig
    from harness.emulation.topology import Link
    from harness.measure.live.fidelity import check_links

    cfg = FidelityConfig(enabled=True, probes=30, interval_ms=5, bw_duration_s=1)
    with across(session, Link("a", "b", real=True),
                NetworkConfig(bw_mbit=10.0, delay_ms=5.0)) as emu:
        fid = check_links(emu, cfg)
    got = fid["links"]["a-b"]
    assert got["real"] and fid["out_of_tolerance"] == [], got
    assert got["delay_ms"]["configured"] is None and got["delay_ms"]["ok"] is None
    assert abs(got["delay_ms"]["measured"] - 1.0) <= cfg.delay_tol_ms, got["delay_ms"]
    assert got["bw_mbit"]["measured_tcp"] >= 30, got["bw_mbit"]  # shaped: <= 9.6
