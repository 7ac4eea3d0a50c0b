"""Nodes as Mininet hosts: a bash holding a network namespace, processes via mnexec.

Mininet gives namespaces, `popen` into them and its interactive CLI; links
are built by the emulation core (not by Mininet's TCLink, which drops netem
errors on the floor). Nodes start in parallel and stop together: a node's start
is mostly waiting for its shell's prompt, and its stop for its processes to die,
so one at a time made 210 nodes take 5 s up and 0.5 s down.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from harness.emulation import freezer
from harness.emulation.backends.base import Backend, EmuNode
from harness.emulation.backends.mininet_lib import Host, Intf, Mininet, setLogLevel
from harness.emulation.cgroups import NodeCgroup, started_joined
from harness.emulation.ledger import Ledger
from harness.emulation.tc import EmulationError
from harness.emulation.topology import Node
from harness.emulation.wiring import WORKERS
from harness.emulation.zygote.client import Forked, Zygote, forkable


class HarnessHost(Host):
    """A Mininet host whose every process joins the node cgroup and carries the run mark."""

    def __init__(self, name: str, env: dict[str, str], cgroup: NodeCgroup, **params: Any):
        self.run_env = env
        self.node_cgroup = cgroup
        self.holder_started = False
        super().__init__(name, **params)

    def _popen(self, cmd: list[str], **params: Any) -> subprocess.Popen:
        params.setdefault("env", self.run_env)
        if not self.holder_started:
            # The holder shell joins the cgroup just after it starts, not from a preexec_fn:
            # without one Popen can vfork (a fork copies this large process's page tables,
            # ~15 ms a node), and the shell forks nothing before Mininet sends it a command.
            self.holder_started = True
            popen = super()._popen(cmd, **params)
            self.node_cgroup.add(popen.pid)
            return popen
        if "preexec_fn" in params:
            return super()._popen(cmd, **params)
        join = params["preexec_fn"] = self.node_cgroup.preexec()
        return started_joined(join, lambda: super(HarnessHost, self)._popen(cmd, **params),
                              self.name)


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
    def __init__(self, host: HarnessHost, ip: str, cgroup: NodeCgroup,
                 zygote: Callable[[], Zygote | None] | None = None) -> None:
        self.host = host
        self.name = host.name
        self.ip = ip
        self.resources = cgroup
        self.zygote = zygote  # the backend's, started when first asked for

    @property
    def ns_pid(self) -> int:
        return self.host.pid

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen:
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        if self.zygote is not None and forkable(argv, self.python, kwargs) and \
                (zygote := self.zygote()) is not None:
            return self.fork(zygote, argv, kwargs)  # type: ignore[return-value]
        # `mnexec -da PID argv`: setsid, join PID's namespaces, exec argv in place (no
        # fork, as the child does not lead its process group): Popen.pid is argv's pid.
        return self.host.popen(argv, **kwargs)

    def fork(self, zygote: Zygote, argv: list[str], kwargs: dict[str, Any]) -> Forked:
        """A node process forked by the zygote: in this node's network namespace and
        cgroups (a frozen freezer cgroup joined from here once it is in the others, as
        `started_joined` does), with the environment mnexec would have given it."""
        join = self.resources.preexec()
        try:
            p = zygote.spawn(argv, f"/proc/{self.host.pid}/ns/net", join.files,
                             kwargs.get("env") or self.host.run_env, kwargs.get("cwd"),
                             kwargs.get("stdin"), kwargs["stdout"], kwargs["stderr"],
                             bool(kwargs.get("text")))
        except EmulationError as e:
            raise EmulationError(f"{self.name}: {e}") from None
        finally:
            join.close()
        if join.later:
            join.adopt(p.pid)
        return p

    def keep_pids(self) -> set[int]:
        return {self.host.pid}


class MininetBackend(Backend):
    name = "mininet"

    def __init__(self, zygote: bool = True) -> None:
        """`zygote`: node processes of the harness's own (stages, sensors, controllers)
        are forks of one process that imported their libraries once
        (`harness.emulation.zygote`), except on nodes with a memory limit (their limit
        must count the libraries); false: each starts Python afresh, via mnexec."""
        self.use_zygote = zygote
        self.forking = True  # until the run's schedule starts
        self._zygote: Zygote | None = None
        self.zygote_lock = threading.Lock()
        self.run_env: dict[str, str] = {}
        setLogLevel("output")
        self.net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False,
                           waitConnected=False)
        self.nodes: dict[str, MininetNode] = {}

    def start_node(self, spec: Node, ip: str, ledger: Ledger) -> EmuNode:
        return self.start_nodes([spec], {spec.name: ip}, ledger)[spec.name]

    def start_nodes(self, specs: list[Node], ips: dict[str, str],
                    ledger: Ledger) -> dict[str, EmuNode]:
        HarnessHost.checkSetup()  # Mininet's one-time class set-up, before the threads
        env = self.run_env = ledger.env()
        zygote = self.zygote if self.use_zygote else None

        def one(spec: Node) -> MininetNode:
            cgroup = NodeCgroup(f"{ledger.prefix}-{spec.name}")
            cgroup.set_cpu(spec.cpu)
            cgroup.set_memory(spec.mem_mb)
            host = HarnessHost(spec.name, env=env, cgroup=cgroup, ip=None)
            # a node with a memory limit starts its processes afresh: a fork's library
            # pages are charged to the zygote's cgroup, so the limit would not count them
            # as a device's memory does
            return MininetNode(host, ips[spec.name], cgroup,
                               zygote if not spec.mem_mb else None)

        with ThreadPoolExecutor(max_workers=2 * WORKERS) as pool:
            futures = {s.name: pool.submit(one, s) for s in specs}
        errors = []
        for spec in specs:  # registered in topology order: the CLI lists hosts so
            try:
                node = futures[spec.name].result()
            except Exception as e:  # the others are kept, so that stop() removes them
                errors.append(f"{spec.name}: {e}")
                continue
            self.net.hosts.append(node.host)
            self.net.nameToNode[spec.name] = node.host
            self.nodes[spec.name] = node
        if errors:
            raise EmulationError("nodes did not start: " + "; ".join(errors[:10]))
        return {s.name: self.nodes[s.name] for s in specs}

    def show_link(self, a: str, a_dev: str, b: str, b_dev: str, ip: dict[str, str]) -> None:
        """Register a link's two interfaces with Mininet so its CLI can show them."""
        i1 = KnownIntf(a_dev, node=self.nodes[a].host, moveIntfFn=lambda *_: True)
        i2 = KnownIntf(b_dev, node=self.nodes[b].host, moveIntfFn=lambda *_: True)
        i1.ip, i1.prefixLen = ip[a], 32
        i2.ip, i2.prefixLen = ip[b], 32
        PeerLink(i1, i2)

    def stop(self) -> None:
        """Every node's processes killed in rounds over all nodes at once until none is
        left; then every holder shell hung up (as Mininet's `terminate` does) before any
        is waited for."""
        nodes = list(self.nodes.values())
        for _ in range(100):
            pids = {p for n in nodes for p in n.processes()}
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGCONT)  # a stopped process must be able to die
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)
        for node in nodes:  # a node still hung: on a v2 host its shell is frozen with it
            freezer.thaw(node.resources.freezer())
        for node in nodes:
            shell = node.host.shell
            if shell is not None and shell.poll() is None:
                try:
                    os.killpg(shell.pid, signal.SIGHUP)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 2
        for node in nodes:
            shell = node.host.shell
            if shell is not None:
                try:
                    shell.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:  # a shell that ignored the hang-up
                    shell.kill()
            node.host.cleanup()  # closes its pty, reaps the shell
        self.nodes.clear()
        with self.zygote_lock:
            if self._zygote is not None:
                self._zygote.close()
                self._zygote = None

    def helpers(self) -> dict[str, list[int]]:
        with self.zygote_lock:
            return {"zygote": [self._zygote.proc.pid] if self._zygote is not None else []}

    def run_started(self) -> None:
        """A process started from now on (a restart, a cold replica, a controller's move)
        is part of what the run measures: it starts afresh, importing its libraries, as it
        would on a device. Forking is the emulation's set-up only."""
        self.forking = False

    def zygote(self) -> Zygote | None:
        with self.zygote_lock:
            if not self.forking:
                return None
            if self._zygote is None:
                self._zygote = Zygote(sys.executable, self.run_env)
            return self._zygote

    def cli(self) -> None:
        import sys

        from mininet.cli import CLI

        CLI(self.net, stdin=sys.stdin)
