"""The seams between the emulation core and a node backend: node resources, network
changes made from the host (`net_run`), processes that signals reach, and the
registry of resource kinds cleanup goes through.

The first tests need no root (a fake backend records what the core asks of it);
the last ones bring up `pair` and check the real Mininet backend.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from harness.core.config import LinkProps
from harness.emulation import cleanup, inventory
from harness.emulation.backends.base import EmuNode
from harness.emulation.cgroups import NodeCgroup
from harness.emulation.inventory import ResourceKind
from harness.emulation.ledger import Ledger, leftovers, remove_run, state_dir
from harness.emulation.network import Emulation
from harness.emulation.resources import NodeResources
from harness.emulation.shapers.netem import NetemShaper
from harness.emulation.wiring import batch
from tests.emulation_fakes import FakeBackend, FakeNode, record_host_commands
from tests.helpers import exp_for, root_only


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


# ---------------------------------------------------------------- no root


def test_cgroup_is_the_node_resources_and_cgroup_is_an_alias() -> None:
    assert issubclass(NodeCgroup, NodeResources)
    node = FakeNode("h1", "10.0.0.1", 1234, [])
    assert node.cgroup is node.resources
    node.cgroup.set_cpu(0.5)
    assert node.resources.cpu == 0.5


def test_net_commands_enter_the_node_namespace_by_pid() -> None:
    node = FakeNode("h1", "10.0.0.1", 1234, [])
    assert EmuNode.net_argv(node, ["tc", "qdisc", "show"]) == [
        "nsenter", "--net=/proc/1234/ns/net", "--", "tc", "qdisc", "show"]


def test_every_network_change_runs_from_the_host(state, tmp_path, monkeypatch) -> None:
    """Set-up, rate changes, netem changes, traces and partitions: all via net_*; the set-up
    as batches and argument lists, never a shell."""
    host = record_host_commands(monkeypatch)
    exp = exp_for("topology=pair", "network.delay_ms=2", "network.tcp_cc=reno")
    backend = FakeBackend()
    emu = Emulation(exp.topology, exp.network, backend, NetemShaper(check=False),
                    Ledger.new(), exp.seed)
    emu.start()
    # every veth pair from one `ip -batch` on the host, both ends placed in their nodes
    pids = {n: str(node.ns_pid) for n, node in emu.nodes.items()}
    assert host == [(["ip", "-batch", "-"],
                     "link add name h1-eth0 address 02:48:00:00:00:00 netns "
                     f"{pids['h1']} type veth peer name h2-eth0 address 02:48:00:01:00:00 "
                     f"netns {pids['h2']}\n")]
    setups = {n: s for n, argv, s in backend.calls}
    assert set(setups) == {"h1", "h2"} and all(a == ["net_setup"] for _, a, _ in backend.calls)
    h1 = setups["h1"]
    assert h1.sysctls["net.ipv4.tcp_congestion_control"] == "reno"
    assert h1.plain == ["h1-eth0"]
    assert batch(h1.ip) == ("link set lo up\n"
                            "addr add 10.0.0.1/32 dev h1-eth0\n"
                            "link set h1-eth0 up\n"
                            "neigh replace 10.0.0.2 lladdr 02:48:00:01:00:00 dev h1-eth0 "
                            "nud permanent\n"
                            "route replace 10.0.0.2/32 dev h1-eth0\n")
    assert batch(h1.tc) == (
        "qdisc replace dev h1-eth0 root handle 1: htb default 1\n"
        "class replace dev h1-eth0 parent 1: classid 1:1 htb rate 10000000kbit "
        "ceil 10000000kbit\n"
        "qdisc replace dev h1-eth0 parent 1:1 handle 10: netem limit 1000 delay 2.0ms\n")
    link = next(iter(emu.links))
    backend.calls.clear()
    emu.set_link(link, LinkProps(bw_mbit=5, delay_ms=7))
    emu.partition([["h1"], ["h2"]])
    emu.heal()
    trace = tmp_path / "t.down"
    trace.write_text("".join(f"{ms}\n" for ms in range(0, 100, 2)))
    emu.follow_trace(link, "fwd", str(trace))
    time.sleep(0.05)
    emu.restore_link(link)
    cmds = [" ".join(argv) for _, argv, _ in backend.calls]
    assert any(c.startswith("tc class change") and "5000kbit" in c for c in cmds)
    assert any(c.startswith("tc qdisc change") and "delay 7" in c for c in cmds)
    assert [c for c in cmds if c == "nft -f -"] and "nft list tables" in cmds
    assert any(c.startswith("tc class change") and "10000000kbit" in c for c in cmds[-3:])
    emu.stop()
    assert not list(state.glob("hx*.json"))


def test_registry_order_and_names() -> None:
    import harness.emulation.backends.docker  # noqa: F401 - registers "containers"

    names = [k.name for k in inventory.kinds()]
    # processes first (a container's too: its PID 1 carries the run mark), then the
    # containers, a run's temp dirs (an emulated host's Ray node), cgroups last (once empty)
    assert names[:7] == ["processes", "containers", "netns", "links", "nft_tables",
                         "temp_dirs", "cgroups"]
    assert names[-1] == "cgroups"


def test_a_registered_kind_is_found_cleaned_and_ordered(state, monkeypatch) -> None:
    prefix = "hx0e0f0a"
    items = {f"{prefix}-c1", f"{prefix}-c2", "hxzzzzzz-x", "other"}
    removed: list[str] = []

    def remove(item: str) -> bool:
        removed.append(item)
        items.discard(item)
        return True

    def find(p: str) -> list[str]:
        return sorted(i for i in items if i.startswith(p))

    # before processes and after cgroups: the order is the registry's, not the file's
    monkeypatch.setitem(inventory._KINDS, "first", ResourceKind(
        "first", lambda p: [f"{p}-first"] if p == prefix else [], lambda i: removed.append(i),
        order=1))
    monkeypatch.setitem(inventory._KINDS, "containers", ResourceKind(
        "containers", find, remove, order=95))
    names = [k.name for k in inventory.kinds()]
    assert names[0] == "first" and names[-1] == "containers"
    assert leftovers(prefix)["containers"] == [f"{prefix}-c1", f"{prefix}-c2"]
    assert prefix in cleanup.orphan_prefixes()  # found through the new kind alone
    assert "hxzzzzzz" not in cleanup.orphan_prefixes()
    state_dir().mkdir(parents=True, exist_ok=True)
    (state_dir() / f"{prefix}.json").write_text("{}")
    counts = remove_run(prefix)
    assert counts["containers"] == 2 and counts["first"] == 0  # remove() said None
    assert removed == [f"{prefix}-first", f"{prefix}-c1", f"{prefix}-c2"]
    assert not leftovers(prefix)["containers"]
    assert not (state_dir() / f"{prefix}.json").exists()
    with pytest.raises(ValueError):
        remove_run("other")


def test_clean_imports_the_backends_so_their_kinds_register() -> None:
    skipped = cleanup.load_backend_kinds()  # backends whose dependencies are missing here
    assert "harness.emulation.backends.mininet" in sys.modules, skipped


# ---------------------------------------------------------------- root: the Mininet backend


@pytest.fixture(scope="module")
def pair():
    from harness.run.lifecycle import emulated

    with emulated(exp_for("topology=pair", "network.delay_ms=1")) as emu:
        yield emu
    assert not any(leftovers(emu.ledger.prefix).values())


@pytest.mark.needs_root
@root_only
def test_popen_pid_is_the_process_and_sigterm_reaches_it(pair) -> None:
    node = pair.nodes["h1"]
    p = node.popen(["sleep", "30"])
    try:
        assert p.pid in node.resources.pids()
        assert p.pid in node.processes()
        # mnexec joins the namespace, then execs `sleep` in place: the same pid becomes
        # sleep (a launcher that forked would stay mnexec); the exec may take a moment
        comm, deadline = "", time.monotonic() + 5
        while comm != "sleep" and time.monotonic() < deadline:
            with open(f"/proc/{p.pid}/comm") as f:
                comm = f.read().strip()
            time.sleep(0.01)
        assert comm == "sleep" and p.poll() is None
        assert os.readlink(f"/proc/{p.pid}/ns/net") == os.readlink(
            f"/proc/{node.ns_pid}/ns/net")
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=5) == -signal.SIGTERM
        assert p.pid not in node.resources.pids()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.needs_root
@root_only
def test_net_run_sees_the_node_namespace_and_its_sysctls(pair) -> None:
    node = pair.nodes["h2"]
    ns = node.net_run(["readlink", "/proc/self/ns/net"]).strip()
    assert ns == os.readlink(f"/proc/{node.ns_pid}/ns/net") != os.readlink("/proc/self/ns/net")
    assert node.ip in node.net_run(["ip", "-o", "addr", "show"])
    # per-namespace sysctls set from the host read back the same from inside the node
    for key in ("net.ipv4.ip_forward", "net.ipv4.tcp_congestion_control",
                "net.ipv6.conf.all.disable_ipv6"):
        path = "/proc/sys/" + key.replace(".", "/")
        assert node.net_run(["sysctl", "-n", key]) == node.run(["cat", path])
    assert node.net_run(["sysctl", "-n", "net.ipv4.ip_forward"]).strip() == "1"
    cc = pair.network.congestion_control()
    assert node.run(["cat", "/proc/sys/net/ipv4/tcp_congestion_control"]).strip() == cc


@pytest.mark.needs_root
@root_only
def test_leftovers_of_a_live_run_by_kind(pair) -> None:
    left = leftovers(pair.ledger.prefix)
    assert left["processes"] and left["cgroups"]
    assert {pair.nodes["h1"].ns_pid, pair.nodes["h2"].ns_pid} <= set(left["processes"])


def test_a_child_that_cannot_join_its_cgroup_says_why(tmp_path) -> None:
    """Python reports a failed preexec_fn only as "Exception occurred in preexec_fn" (all a
    failed CI run said); the joiner hands the file and the reason back through a pipe."""

    from harness.emulation.cgroups import joiner, started_joined
    from harness.emulation.tc import EmulationError

    j = joiner([str(tmp_path / "nosuch" / "cgroup.procs")])
    with pytest.raises(EmulationError, match=r"^n1: joining .*nosuch/cgroup.procs: No such file"):
        started_joined(j, lambda: subprocess.Popen(["true"], preexec_fn=j), "n1")
    procs = tmp_path / "cgroup.procs"
    procs.write_text("")
    j = joiner([str(procs)])
    p = started_joined(j, lambda: subprocess.Popen(["true"], preexec_fn=j), "n1")
    p.wait()
    assert procs.read_text() == str(p.pid)
