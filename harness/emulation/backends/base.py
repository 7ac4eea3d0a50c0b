"""The small interface between the emulation core and whatever hosts the nodes.

Links, faults and pipeline stages only use `EmuNode`: a network namespace
reachable by PID, a way to run processes in the node, and the node's resources
(`harness.emulation.resources.NodeResources`). A Docker backend provides the
same with containers: it implements `ns_pid`, `popen`, `keep_pids` and
`resources`; network set-up and link changes (`net_run`) are done here, from the
host, so a node needs none of ip, tc, nft, ethtool or sysctl inside it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from typing import Any

from harness.emulation.ledger import Ledger
from harness.emulation.resources import NodeResources
from harness.emulation.tc import EmulationError
from harness.emulation.topology import Node


class EmuNode(ABC):
    """A running node."""

    name: str
    ip: str
    resources: NodeResources

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

        The returned Popen's `pid` is the process running `argv` itself, not a
        launcher that forked it, so `send_signal`/`terminate`/`kill` reach it and
        the pid is in `resources.pids()`. (Mininet's `mnexec -da PID` joins the
        namespaces and execs in place; it would fork only if the child led its
        process group, so do not pass `start_new_session`/`process_group`. A
        `docker exec` client is not the process: a backend using it must return
        a wrapper whose signals reach the process in the container.)
        """

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
        """Start a host tool (ip, tc, nft, ethtool, sysctl, sh) in the node's network
        namespace only: the host's filesystem and cgroup, not the node's, so the
        node needs none of these tools. `net.*` sysctls apply to the entered
        namespace (/proc/sys/net follows the reader's network namespace)."""
        return subprocess.Popen(self.net_argv(argv), **kwargs)

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

    def kill_all(self) -> int:
        """SIGKILL every process of the node until none is left (forks included)."""
        total = 0
        for _ in range(50):
            n = self.signal_all(signal.SIGCONT) and self.signal_all(signal.SIGKILL)
            if not n:
                break
            total += n
            time.sleep(0.01)
        return total


class Backend(ABC):
    """Creates and destroys nodes."""

    name: str

    @abstractmethod
    def start_node(self, spec: Node, ip: str, ledger: Ledger) -> EmuNode:
        """Start one node with its resource limits (cpu, mem_mb) applied."""

    @abstractmethod
    def stop(self) -> None:
        """Stop every node this backend started."""

    def cli(self) -> None:
        raise EmulationError(f"backend {self.name!r} has no interactive CLI")
