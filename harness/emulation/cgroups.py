"""Per-node cgroups: CPU share, memory limit, CPU accounting and the node's process set.

A node's processes are exactly its cgroup's members, so a crash kills them
all, a throttle (thermal) lowers the CPU quota, and `cpu_s` is read from one
place. Works with cgroup v1 (cpu, cpuacct, memory hierarchies) and v2.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from harness.emulation.inventory import CGROUP_ROOT
from harness.emulation.resources import NodeResources

PERIOD_US = 100_000


def cgroup_version() -> int | None:
    if (CGROUP_ROOT / "cpu" / "cgroup.procs").exists():
        return 1
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return 2
    return None


def read_cpu_usage_s(d: Path, v2: bool) -> float:
    """CPU seconds of cgroup `d` (v1: its cpuacct directory; v2: the unified one)."""
    if not v2:
        return int((d / "cpuacct.usage").read_text()) / 1e9
    for line in (d / "cpu.stat").read_text().splitlines():
        k, v = line.split()
        if k == "usage_usec":
            return int(v) / 1e6
    return 0.0


def read_oom_kills(d: Path, v2: bool) -> int:
    """OOM kills counted by cgroup `d` (v1: its memory directory)."""
    for line in (d / ("memory.events" if v2 else "memory.oom_control")).read_text() \
            .splitlines():
        k, _, v = line.partition(" ")
        if k == "oom_kill":
            return int(v)
    return 0


def joiner(procs_files: list[str]) -> Callable[[], None]:
    """A Popen preexec_fn: the child writes its pid into each `cgroup.procs` file before
    it execs (plain os calls only: it runs between fork and exec)."""
    def join() -> None:
        pid = str(os.getpid()).encode()
        for f in procs_files:
            fd = os.open(f, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    return join


class NodeCgroup(NodeResources):
    """The cgroup(s) named `<prefix>-<node>`: a node's resources (Mininet backend)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.version = cgroup_version()
        if self.version == 1:
            self.dirs = {c: CGROUP_ROOT / c / name for c in ("cpu", "cpuacct", "memory")
                         if (CGROUP_ROOT / c).is_dir()}
        elif self.version == 2:
            root = CGROUP_ROOT
            wanted = {"cpu", "memory"} & set((root / "cgroup.controllers").read_text().split())
            enabled = set((root / "cgroup.subtree_control").read_text().split())
            for c in wanted - enabled:
                (root / "cgroup.subtree_control").write_text(f"+{c}")
            self.dirs = {"cpu": root / name, "cpuacct": root / name, "memory": root / name}
        else:
            raise RuntimeError("no cgroup hierarchy at /sys/fs/cgroup")
        for d in set(self.dirs.values()):
            d.mkdir(exist_ok=True)

    def _procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in sorted(set(self.dirs.values()))]

    def add(self, pid: int) -> None:
        for f in self._procs_files():
            f.write_text(str(pid))

    def preexec(self) -> Callable[[], None]:
        """For Popen(preexec_fn=...): the child joins the cgroup before it execs."""
        return joiner([str(f) for f in self._procs_files()])

    def pids(self) -> list[int]:
        return sorted({int(p) for f in self._procs_files() for p in f.read_text().split()})

    def set_cpu(self, cores: float) -> None:
        """Limit to `cores` CPUs (0.3 = 30 % of one core); 0 = unlimited."""
        d = self.dirs["cpu"]
        quota = int(cores * PERIOD_US) if cores > 0 else -1
        if self.version == 1:
            (d / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (d / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            (d / "cpu.max").write_text(f"{quota if quota > 0 else 'max'} {PERIOD_US}")

    def set_memory(self, mb: int) -> None:
        d = self.dirs["memory"]
        if self.version == 1:
            (d / "memory.limit_in_bytes").write_text(str(mb * 2**20) if mb > 0 else "-1")
        else:
            (d / "memory.max").write_text(str(mb * 2**20) if mb > 0 else "max")

    def oom_kills(self) -> int:
        return read_oom_kills(self.dirs["memory"], self.version == 2)

    def cpu_usage_s(self) -> float:
        return read_cpu_usage_s(self.dirs["cpuacct"], self.version == 2)
