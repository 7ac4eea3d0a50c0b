"""Per-node cgroups: CPU share, memory limit, CPU accounting and the node's process set.

A node's processes are exactly its cgroup's members, so a crash kills them
all, a throttle (thermal) lowers the CPU quota, a hang freezes them (the v2
freezer, `harness.emulation.freezer`) and `cpu_s` is read from one place. Works
with cgroup v1 (cpu, cpuacct, memory hierarchies; the freezer in the cgroup2
mount beside them, where there is one) and v2.
"""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from harness.emulation import freezer
from harness.emulation.inventory import CGROUP_ROOT
from harness.emulation.resources import NodeResources
from harness.emulation.tc import EmulationError

T = TypeVar("T")

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


# a migration the kernel refuses for a moment (a cgroup busy with another migration, a
# pids limit still counting tasks that are exiting): tried again, 20 x 10 ms at most
TRANSIENT = (errno.EAGAIN, errno.EBUSY, errno.EINTR)


def join_cgroups(procs_files: list[str], pid: bytes) -> None:
    """Write `pid` into each `cgroup.procs` file, plain os calls only (it also runs between
    a fork and an exec); a refusal that does not pass is OSError "joining FILE: reason"."""
    for f in procs_files:
        for attempt in range(20):
            try:
                fd = os.open(f, os.O_WRONLY)
                try:
                    os.write(fd, pid)
                finally:
                    os.close(fd)
                break
            except OSError as e:
                if e.errno not in TRANSIENT or attempt == 19:
                    raise OSError(e.errno, f"joining {f}: {e.strerror}") from None
                time.sleep(0.01)


class Joiner:
    """A Popen preexec_fn: the child writes its pid into each `cgroup.procs` file before
    it execs (plain os calls only: it runs between fork and exec). Python reports any
    failure there only as "Exception occurred in preexec_fn", so the child first writes
    which file refused it and why into a pipe; `why()` reads it in the parent.

    `later`: files the parent writes the pid into once the child has exec'd
    (`started_joined`): a frozen freezer cgroup, which would freeze the child before
    its exec and so the parent's Popen with it."""

    def __init__(self, procs_files: list[str], later: list[str] | None = None) -> None:
        self.files = procs_files
        self.later = later or []
        self.r, self.w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)

    def __call__(self) -> None:
        try:
            join_cgroups(self.files, str(os.getpid()).encode())
        except OSError as e:
            os.write(self.w, str(e.strerror).encode())
            raise

    def why(self) -> str:
        try:
            return os.read(self.r, 4096).decode(errors="replace")
        except BlockingIOError:
            return ""

    def close(self) -> None:
        for fd in (self.r, self.w):
            os.close(fd)

    def adopt(self, pid: int) -> None:
        """From the parent: `pid`, and any child it forked already (a launcher that
        forks, nsenter), join the `later` cgroups; a process already gone is skipped."""
        for f in self.later:
            for p in (pid, *_children(pid)):
                try:
                    Path(f).write_text(str(p))
                except ProcessLookupError:
                    continue


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def joiner(procs_files: list[str], freezer_dirs: list[Path] | None = None) -> Joiner:
    """The Joiner of a node's cgroups: its `procs_files`, and its freezer cgroups
    (`freezer_dirs`) before the exec, or after it while they are frozen."""
    fz = [str(d / "cgroup.procs") for d in freezer_dirs or []]
    if freezer.is_frozen(freezer_dirs or []):
        return Joiner([f for f in procs_files if f not in fz], later=fz)
    return Joiner([*procs_files, *(f for f in fz if f not in procs_files)])


def started_joined(join: Joiner | None, start: Callable[[], T], who: str) -> T:
    """`start()` (a Popen with `preexec_fn=join`); a failure to join names its reason.
    A process started while its node is frozen joins the frozen cgroup now, from here:
    it stops at once (it ran for the moment between its exec and this)."""
    try:
        started = start()
    except subprocess.SubprocessError as e:
        why = join.why() if join is not None else ""
        raise EmulationError(f"{who}: {why or e}") from None
    finally:
        if join is not None:
            join.close()
    if join is not None and join.later:
        join.adopt(started.pid)  # type: ignore[attr-defined]
    return started


class NodeCgroup(NodeResources):
    """The cgroup(s) named `<prefix>-<node>`: a node's resources (Mininet backend). On v1,
    the freezer is a cgroup of the same name in the cgroup2 mount beside the v1
    hierarchies, which only the node's processes join (not its holder shell)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.version = cgroup_version()
        self.freeze_dir: Path | None = None
        if self.version == 1:
            self.dirs = {c: CGROUP_ROOT / c / name for c in ("cpu", "cpuacct", "memory")
                         if (CGROUP_ROOT / c).is_dir()}
            v2 = freezer.v2_root()
            if v2 is None:
                self.no_freezer = freezer.NO_V2
            else:
                self.freeze_dir = v2 / name
                self.freeze_dir.mkdir(exist_ok=True)
        elif self.version == 2:
            root = CGROUP_ROOT
            wanted = {"cpu", "memory"} & set((root / "cgroup.controllers").read_text().split())
            enabled = set((root / "cgroup.subtree_control").read_text().split())
            for c in wanted - enabled:
                (root / "cgroup.subtree_control").write_text(f"+{c}")
            self.dirs = {"cpu": root / name, "cpuacct": root / name, "memory": root / name}
            self.freeze_dir = root / name
        else:
            raise RuntimeError("no cgroup hierarchy at /sys/fs/cgroup")
        for d in set(self.dirs.values()):
            d.mkdir(exist_ok=True)

    def _procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in sorted(set(self.dirs.values()))]

    def add(self, pid: int) -> None:
        """(The holder shell: on v1 it stays out of the freezer cgroup, never frozen.)"""
        for f in self._procs_files():
            f.write_text(str(pid))

    def preexec(self) -> Joiner:
        """For Popen(preexec_fn=...): the child joins the cgroup before it execs (the
        freezer's after it, while that is frozen)."""
        return joiner([str(f) for f in self._procs_files()], self.freezer())

    def freezer(self) -> list[Path]:
        return [self.freeze_dir] if self.freeze_dir is not None else []

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
