"""A node's hang: all its processes frozen at once by the cgroup v2 freezer.

Writing 1 to a v2 cgroup's `cgroup.freeze` stops every task in it, atomically, and
every task that joins it or is forked in it later; `cgroup.events` says `frozen 1`
once all are. A SIGSTOP loop over the node's processes can miss one forked while it
runs, and anything started after it.

Only the v2 freezer is used. The v1 freezer hierarchy (`freezer.state`, which `docker
pause` uses on a v1 host) holds even SIGKILL until the cgroup is thawed (measured here,
kernel 6.18: a frozen `sleep`, sent SIGKILL, stayed in state D until THAWED), so a
crash, a kill or the teardown during a hang would not take effect. A v2 frozen task
dies on SIGKILL at once. The v2 hierarchy is the root on a v2 host, or the cgroup2
mount beside the v1 hierarchies on a hybrid host (`/sys/fs/cgroup/unified`, as here).
A node without one (a v1-only host) hangs by SIGSTOP (`EmuNode.freeze`) and the
fault's event says so.

A process joining a frozen cgroup freezes at once, before it can exec: a Popen whose
child joins it in its preexec_fn would wait until the thaw. So a process started in a
frozen node joins the freezer cgroup from the parent, right after it started
(`harness.emulation.cgroups.Joiner.later`).
"""

from __future__ import annotations

import time
from pathlib import Path

from harness.emulation.inventory import CGROUP_ROOT
from harness.emulation.tc import EmulationError

UNIFIED = CGROUP_ROOT / "unified"  # cgroup2 beside the v1 hierarchies (hybrid)
NO_V2 = ("no cgroup2 hierarchy (v1 only): the v1 freezer holds even SIGKILL until "
         "thawed, so a crash or kill during a hang would not take effect")
CONFIRM_S = 2.0  # a task frozen in the kernel waits for its syscall: ms at most here


def v2_root() -> Path | None:
    """Where the cgroup2 hierarchy is mounted (with a freezer in every cgroup), or None."""
    for root in (CGROUP_ROOT, UNIFIED):
        if (root / "cgroup.controllers").exists():
            return root
    return None


def v2_dir_of(pid: int) -> Path | None:
    """The v2 cgroup directory of process `pid` (its `0::` line), or None."""
    root = v2_root()
    if root is None:
        return None
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            d = root / line[3:].lstrip("/")
            return d if (d / "cgroup.freeze").exists() else None
    return None


def is_frozen(dirs: list[Path]) -> bool:
    """Whether the freezer of the first cgroup in `dirs` is on (what was asked, not yet
    whether every task has stopped)."""
    try:
        return bool(dirs) and (dirs[0] / "cgroup.freeze").read_text().strip() == "1"
    except OSError:
        return False


def _frozen(d: Path) -> bool:
    try:
        events = (d / "cgroup.events").read_text()
    except FileNotFoundError:  # gone (an image stage's container that exited): nothing left
        return True
    for line in events.splitlines():
        if line.startswith("frozen "):
            return line.split()[1] == "1"
    return False


def freeze(dirs: list[Path]) -> float:
    """Freeze every cgroup in `dirs` and wait until each reports all its tasks frozen;
    the seconds that took. EmulationError if one is not frozen within CONFIRM_S."""
    t0 = time.monotonic()
    present = []
    for d in dirs:
        try:
            (d / "cgroup.freeze").write_text("1")
            present.append(d)
        except FileNotFoundError:  # an image stage's container that has exited
            continue
    deadline = t0 + CONFIRM_S
    for d in present:
        while not _frozen(d):
            if time.monotonic() > deadline:
                raise EmulationError(f"{d}: not frozen after {CONFIRM_S} s")
            time.sleep(0.0005)
    return time.monotonic() - t0


def thaw(dirs: list[Path]) -> None:
    """Let every cgroup in `dirs` run again (a cgroup already gone is skipped)."""
    for d in dirs:
        try:
            (d / "cgroup.freeze").write_text("0")
        except FileNotFoundError:
            continue
