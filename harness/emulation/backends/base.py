"""The small interface between the emulation core and whatever hosts the nodes.

Links, faults and (later) pipeline stages only use `EmuNode`: a network
namespace reachable by PID, a way to run processes in it, and the node's
cgroup. A Docker backend provides the same with containers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from typing import Any

from harness.emulation.cgroups import NodeCgroup
from harness.emulation.ledger import Ledger
from harness.emulation.tc import EmulationError
from harness.emulation.topology import Node


class EmuNode(ABC):
    """A running node."""

    name: str
    ip: str
    cgroup: NodeCgroup

    @property
    @abstractmethod
    def ns_pid(self) -> int:
        """A PID inside the node's network namespace (for `ip link ... netns PID`)."""

    @abstractmethod
    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen:
        """Start `argv` inside the node: its namespace, its cgroup, the run's env mark."""

    def run(self, argv: list[str], input: str | None = None, timeout: float = 30) -> str:
        """Run `argv` in the node and wait; failure is an EmulationError naming the command."""
        p = self.popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
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
        return [p for p in self.cgroup.pids() if p not in self.keep_pids()]

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
        """Start one node with its cgroup limits applied."""

    @abstractmethod
    def stop(self) -> None:
        """Stop every node this backend started."""

    def cli(self) -> None:
        raise EmulationError(f"backend {self.name!r} has no interactive CLI")
