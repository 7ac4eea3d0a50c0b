"""Nodes as Mininet hosts: a bash holding a network namespace, processes via mnexec.

Mininet gives namespaces, `popen` into them and its interactive CLI; links
are built by the emulation core (not by Mininet's TCLink, which drops netem
errors on the floor).
"""

from __future__ import annotations

import subprocess
from typing import Any

from mininet.link import Intf
from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.node import Host

from harness.emulation.backends.base import Backend, EmuNode
from harness.emulation.cgroups import NodeCgroup
from harness.emulation.ledger import Ledger
from harness.emulation.topology import Node


class HarnessHost(Host):
    """A Mininet host whose every process joins the node cgroup and carries the run mark."""

    def __init__(self, name: str, env: dict[str, str], cgroup: NodeCgroup, **params: Any):
        self.run_env = env
        self.node_cgroup = cgroup
        super().__init__(name, **params)

    def _popen(self, cmd: list[str], **params: Any) -> subprocess.Popen:
        params.setdefault("env", self.run_env)
        params.setdefault("preexec_fn", self.node_cgroup.preexec())
        return super()._popen(cmd, **params)


class KnownIntf(Intf):
    """An interface the emulation core already created and configured, shown to the CLI."""

    def config(self, **_params: Any) -> dict:
        return {}


class PeerLink:
    """Enough of a Mininet Link for the CLI's `net` and `links` commands."""

    def __init__(self, intf1: Intf, intf2: Intf) -> None:
        self.intf1, self.intf2 = intf1, intf2
        intf1.link = intf2.link = self

    def status(self) -> str:
        return "(OK OK)"

    def __str__(self) -> str:
        return f"{self.intf1}<->{self.intf2}"


class MininetNode(EmuNode):
    def __init__(self, host: HarnessHost, ip: str, cgroup: NodeCgroup) -> None:
        self.host = host
        self.name = host.name
        self.ip = ip
        self.resources = cgroup

    @property
    def ns_pid(self) -> int:
        return self.host.pid

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen:
        # `mnexec -da PID argv`: setsid, join PID's namespaces, exec argv in place (no
        # fork, as the child does not lead its process group): Popen.pid is argv's pid.
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        return self.host.popen(argv, **kwargs)

    def keep_pids(self) -> set[int]:
        return {self.host.pid}


class MininetBackend(Backend):
    name = "mininet"

    def __init__(self) -> None:
        setLogLevel("output")
        self.net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False,
                           waitConnected=False)
        self.nodes: dict[str, MininetNode] = {}

    def start_node(self, spec: Node, ip: str, ledger: Ledger) -> EmuNode:
        cgroup = NodeCgroup(f"{ledger.prefix}-{spec.name}")
        cgroup.set_cpu(spec.cpu)
        cgroup.set_memory(spec.mem_mb)
        host = self.net.addHost(spec.name, cls=HarnessHost, ip=None, env=ledger.env(),
                                cgroup=cgroup)
        node = MininetNode(host, ip, cgroup)
        self.nodes[spec.name] = node
        return node

    def show_link(self, a: str, a_dev: str, b: str, b_dev: str, ip: dict[str, str]) -> None:
        """Register a link's two interfaces with Mininet so its CLI can show them."""
        i1 = KnownIntf(a_dev, node=self.nodes[a].host, moveIntfFn=lambda *_: True)
        i2 = KnownIntf(b_dev, node=self.nodes[b].host, moveIntfFn=lambda *_: True)
        i1.ip, i1.prefixLen = ip[a], 32
        i2.ip, i2.prefixLen = ip[b], 32
        PeerLink(i1, i2)

    def stop(self) -> None:
        for node in self.nodes.values():
            node.kill_all()
            node.host.terminate()
        self.nodes.clear()

    def cli(self) -> None:
        import sys

        from mininet.cli import CLI

        CLI(self.net, stdin=sys.stdin)
