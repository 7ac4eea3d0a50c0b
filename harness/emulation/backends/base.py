"""The small interface between the emulation core and whatever hosts the nodes.

Links, faults and pipeline stages only use `EmuNode`: a network namespace
reachable by PID, a way to run processes in the node, the interpreter that runs
harness code there (`python`), and the node's resources
(`harness.emulation.resources.NodeResources`). The Docker backend provides the
same with containers (`backends/docker/`); network set-up and link changes
(`net_setup`, `net_run`) are done here, from the host, so a node needs none of ip, tc,
nft, ethtool or sysctl inside it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import replace
from typing import Any

from harness.core.config import fail
from harness.emulation import freezer, netdev
from harness.emulation.ledger import Ledger
from harness.emulation.resources import NodeResources
from harness.emulation.tc import EmulationError
from harness.emulation.topology import Node, Topology
from harness.emulation.wiring import NodeSetup, batch


class EmuNode(ABC):
    """A running node."""

    name: str
    ip: str
    resources: NodeResources
    python: str = sys.executable  # the interpreter that runs harness code in this node

    @property
    def cgroup(self) -> NodeResources:
        """Old name of `resources` (kept while callers move over)."""
        return self.resources

    @property
    @abstractmethod
    def ns_pid(self) -> int:
        """A PID inside the node's network namespace (for `ip link ... netns PID`)."""

    @abstractmethod
    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen:
        """Start `argv` as a process of the node: its namespaces, its resources (cgroup),
        the run's env mark.

        `send_signal`/`terminate`/`kill` on the returned Popen reach the process
        running `argv`, its exit status is that process's, and the process is in
        `resources.pids()`. Mininet's `mnexec -da PID` joins the namespaces and
        execs in place, so `pid` is the process itself (it would fork only if the
        child led its process group: do not pass `start_new_session`). A container
        node's launcher (`nsenter -p`) must fork to enter the PID namespace: its
        Popen forwards signals to the child and exits with the child's status.
        """

    def start_image(self, key: str, image: str, command: list[str] | None,
                    env: dict[str, str]) -> None:
        """Start (or start again) a server from a container image in this node, sharing
        its network; its processes count as the node's. Only container backends can."""
        raise EmulationError(f"{self.name}: this backend runs no container images")

    def run(self, argv: list[str], input: str | None = None, timeout: float = 30) -> str:
        """Run `argv` in the node and wait; failure is an EmulationError naming the command."""
        p = self.popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
        return self._wait(p, argv, input, timeout)

    # -- the node's network, configured from the host ------------------------------------

    def net_argv(self, argv: list[str]) -> list[str]:
        """`argv` (a host tool) run in the node's network namespace, entered by PID."""
        return ["nsenter", f"--net=/proc/{self.ns_pid}/ns/net", "--", *argv]

    def net_popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen:
        """Start a host tool (ip, tc, nft, ...) in the node's network
        namespace only: the host's filesystem and cgroup, not the node's, so the
        node needs none of these tools. `net.*` sysctls apply to the entered
        namespace (/proc/sys/net follows the reader's network namespace)."""
        return subprocess.Popen(self.net_argv(argv), **kwargs)

    def net_setup(self, setup: NodeSetup) -> None:
        """Apply the node's network set-up (`harness.emulation.wiring.NodeSetup`) from this
        process (`harness.emulation.netdev`): sysctls and offloads without a process per
        device, then its `ip -batch` and `tc -batch` started in the namespace."""
        batches = [(["ip", "-batch", "-"], batch(setup.ip))]
        if setup.tc:
            batches.append((["tc", "-batch", "-"], batch(setup.tc)))
        netdev.tune(f"/proc/{self.ns_pid}/ns/net", setup.sysctls, setup.plain,
                    batches=batches)

    def net_run(self, argv: list[str], input: str | None = None, timeout: float = 30) -> str:
        """`net_popen` and wait; failure is an EmulationError naming the command."""
        p = self.net_popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        return self._wait(p, argv, input, timeout)

    def _wait(self, p: subprocess.Popen, argv: list[str], input: str | None,
              timeout: float) -> str:
        try:
            out, err = p.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise EmulationError(f"{self.name}: {' '.join(argv)[:200]}: timed out") from None
        if p.returncode != 0:
            raise EmulationError(f"{self.name}: {' '.join(argv)[:200]}: "
                                 f"{(err or out).strip()[:500]}")
        return out

    @abstractmethod
    def keep_pids(self) -> set[int]:
        """Processes that hold the node itself (never killed by a process fault)."""

    def processes(self) -> list[int]:
        return [p for p in self.resources.pids() if p not in self.keep_pids()]

    def signal_all(self, sig: int) -> int:
        n = 0
        for pid in self.processes():
            try:
                os.kill(pid, sig)
                n += 1
            except ProcessLookupError:
                pass
        return n

    def hang(self) -> dict[str, Any]:
        """Stop every process of the node (the `hang` fault's event detail: how many, and
        how). With the node's cgroup2 freezer all at once, and any process started or
        forked later too; without one (`resources.no_freezer` says why), SIGSTOP to each
        process there is now."""
        dirs = self.resources.freezer()
        if not dirs:
            return {"stopped": self.sigstop(), "via": "SIGSTOP",
                    "no_freezer": self.resources.no_freezer}
        n = len(self.processes())
        took = freezer.freeze(dirs)
        return {"stopped": n, "via": "cgroup.freeze", "freeze_ms": round(took * 1000, 3)}

    def resume(self) -> dict[str, Any]:
        """Let them run again (the `resume` fault's event detail)."""
        dirs = self.resources.freezer()
        if not dirs:
            return {"resumed": self.sigcont(), "via": "SIGCONT"}
        freezer.thaw(dirs)
        return {"resumed": len(self.processes()), "via": "cgroup.freeze"}

    def freeze(self) -> int:
        """`hang`: how many processes it stopped."""
        return int(self.hang()["stopped"])

    def thaw(self) -> int:
        """`resume`: how many processes run again."""
        return int(self.resume()["resumed"])

    def sigstop(self) -> int:
        """The hang without a freezer: SIGSTOP each process; how many."""
        return self.signal_all(signal.SIGSTOP)

    def sigcont(self) -> int:
        return self.signal_all(signal.SIGCONT)

    def kill_all(self) -> int:
        """SIGKILL every process of the node until none is left (forks included); a hang
        in force ends with them (a frozen process dies on SIGKILL all the same), so what
        the node starts afterwards runs."""
        total = 0
        for _ in range(50):
            n = self.signal_all(signal.SIGCONT) and self.signal_all(signal.SIGKILL)
            if not n:
                break
            total += n
            time.sleep(0.01)
        freezer.thaw(self.resources.freezer())
        return total


class Backend(ABC):
    """Creates and destroys nodes."""

    name: str

    @abstractmethod
    def start_node(self, spec: Node, ip: str, ledger: Ledger) -> EmuNode:
        """Start one node with its resource limits (cpu, mem_mb) applied."""

    def start_nodes(self, specs: list[Node], ips: dict[str, str],
                    ledger: Ledger) -> dict[str, EmuNode]:
        """Start every node (a backend may start them in parallel); a node that started
        is kept even if a later one fails, so `stop` removes it."""
        return {s.name: self.start_node(s, ips[s.name], ledger) for s in specs}

    gpu: str = "require"  # nodes asking for GPUs where there are none: require | prefer

    def validate(self, topo: Topology, warnings: list[str]) -> Topology:
        """Check, before anything changes, that this backend can host `topo`
        (ConfigError naming the key otherwise); append warnings for the summary. Returns
        the topology this backend will run: `topo` itself, or a copy with what it
        decided (`backend.gpu=prefer` on a host without GPUs: the nodes asking for them
        on CPU). `topo` is never changed."""
        if self.gpu not in ("require", "prefer"):
            fail("backend.gpu", self.gpu, "one of require, prefer")
        missing = self.gpu_missing([n for n in topo.nodes if n.gpus])
        nodes = []
        for node in topo.nodes:
            if not node.gpus or missing is None:
                nodes.append(node)
                continue
            if self.gpu == "require":
                fail(f"topology node {node.name}: gpus", node.gpus,
                     f"{missing} (backend.gpu=prefer runs it on CPU)")
            warnings.append(f"node {node.name} asked for gpus={node.gpus} but {missing}: "
                            "its stages run on CPU (backend.gpu=prefer)")
            nodes.append(replace(node, gpus=0, providers=[
                p for p in node.providers if p != "CUDAExecutionProvider"]
                or ["CPUExecutionProvider"]))
        return topo if nodes == topo.nodes else replace(topo, nodes=nodes)

    def gpu_missing(self, nodes: list[Node]) -> str | None:
        """Why `nodes` (which ask for GPUs) cannot have them here, or None if they can.
        Processes see the host's devices as they are."""
        if nodes and not os.path.exists("/dev/nvidiactl"):
            return "this host has no NVIDIA GPU (/dev/nvidiactl)"
        return None

    def check_stage_images(self, stages: list, topo: Topology) -> None:
        """Stages served from a container image need a backend that runs them."""
        for i, s in enumerate(stages):
            if s.image is not None:
                fail(f"pipeline.stages[{i}].image", s.image,
                     f"backend {self.name} runs no container images (backend=docker does)")

    def share(self, path: str) -> None:  # noqa: B027 - most backends share the host's files
        """A host directory the node processes read and write (the run's folder)."""

    def run_started(self) -> None:  # noqa: B027 (most backends start processes one way)
        """The run's schedule starts: processes started from now on are the system's."""

    def helpers(self) -> dict[str, list[int]]:
        """Pids of its own helper processes by kind (the summary's footprint counts them)."""
        return {}

    @abstractmethod
    def stop(self) -> None:
        """Stop every node this backend started."""

    def cli(self) -> None:
        raise EmulationError(f"backend {self.name!r} has no interactive CLI")
