"""A fake node backend for the emulation core without root: it records every network
command the core asks of a node (`net_run`, `net_setup`) and starts nothing."""

from __future__ import annotations

import subprocess
from typing import Any

from harness.emulation.backends.base import Backend, EmuNode
from harness.emulation.ledger import Ledger
from harness.emulation.resources import NodeResources
from harness.emulation.topology import Node
from harness.emulation.wiring import NodeSetup


class FakeResources(NodeResources):
    def __init__(self) -> None:
        self.name, self.cpu, self.mem = "fake", 0.0, 0

    def set_cpu(self, cores: float) -> None:
        self.cpu = cores

    def set_memory(self, mb: int) -> None:
        self.mem = mb

    def cpu_usage_s(self) -> float:
        return 1.5

    def oom_kills(self) -> int:
        return 0

    def pids(self) -> list[int]:
        return []

    def add(self, pid: int) -> None:
        pass


class FakeNode(EmuNode):
    """Records every network command; in-node processes are not allowed for set-up."""

    def __init__(self, name: str, ip: str, pid: int, calls: list) -> None:
        self.name, self.ip, self._pid, self.calls = name, ip, pid, calls
        self.resources = FakeResources()

    @property
    def ns_pid(self) -> int:
        return self._pid

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen:
        raise AssertionError(f"network set-up ran inside node {self.name}: {argv}")

    def net_popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen:
        self.calls.append((self.name, argv, None))
        return subprocess.Popen(["true"], **kwargs)

    def net_run(self, argv: list[str], input: str | None = None, timeout: float = 30) -> str:
        self.calls.append((self.name, argv, input))
        return ""

    def net_setup(self, setup: NodeSetup) -> None:
        self.calls.append((self.name, ["net_setup"], setup))

    def keep_pids(self) -> set[int]:
        return set()


class FakeBackend(Backend):
    name = "fake"

    def __init__(self, zygote: bool = True) -> None:  # the mininet group's keys: no processes
        self.calls: list = []

    def start_node(self, spec: Node, ip: str, ledger: Ledger) -> EmuNode:
        return FakeNode(spec.name, ip, 4000 + len(self.calls), self.calls)

    def stop(self) -> None:
        pass


def record_host_commands(monkeypatch) -> list[tuple[list[str], str | None]]:
    """The root namespace's commands of set-up (`ip -batch` creating the veths), recorded
    instead of run: with a fake backend there are no namespaces to create them in."""
    from harness.emulation import wiring

    host: list[tuple[list[str], str | None]] = []
    monkeypatch.setattr(wiring, "run", lambda argv, input=None, timeout=30: host.append(
        (argv, input)) or "")
    return host
