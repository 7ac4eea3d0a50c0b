"""The kinds of thing a run creates, each findable by the run prefix: a registry.

A run's resources are named `<prefix>...` (prefix = "hx" + 6 hex digits) or, for
processes, carry `HARNESS_RUN=<prefix>` in their environment or sit in the run's
cgroups. Each kind knows how to find what a prefix owns and how to remove one
item; `remove_all` removes kind by kind in `order` (processes first, so nothing
holds a namespace or cgroup any more; cgroups last, once empty). A backend module
that creates more kinds (e.g. Docker containers named with the prefix) calls
`register(kind)` when it is imported.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_MARK = "HARNESS_RUN"
PREFIX_RE = re.compile(r"^hx[0-9a-f]{6}")
FULL_PREFIX = re.compile(r"hx[0-9a-f]{6}")
CGROUP_ROOT = Path("/sys/fs/cgroup")
TEMP_DIR = Path("/tmp")


@dataclass(frozen=True)
class ResourceKind:
    """One kind of resource. `find(prefix)` lists the items whose name starts with
    `prefix` (also called with just "hx" to discover prefixes); `remove(item)` removes
    one and says whether it did; `label(item)` is the name that carries the prefix."""

    name: str
    find: Callable[[str], list]
    remove: Callable[[Any], bool]
    order: int
    label: Callable[[Any], str] = str

    def prefixes(self) -> set[str]:
        """Run prefixes seen on this kind's items on this machine."""
        out = set()
        for item in self.find("hx"):
            m = FULL_PREFIX.match(self.label(item))
            if m:
                out.add(m.group(0))
        return out

    def remove_all(self, prefix: str) -> int:
        return sum(1 for item in self.find(prefix) if self.remove(item))


_KINDS: dict[str, ResourceKind] = {}


def register(kind: ResourceKind) -> ResourceKind:
    """Add (or replace, by name) a kind; a backend module calls this at import."""
    _KINDS[kind.name] = kind
    return kind


def kinds() -> list[ResourceKind]:
    """Every registered kind in removal order."""
    return sorted(_KINDS.values(), key=lambda k: k.order)


def find_all(prefix: str) -> dict[str, list]:
    return {k.name: k.find(prefix) for k in kinds()}


def remove_all(prefix: str) -> dict[str, int]:
    return {k.name: k.remove_all(prefix) for k in kinds()}


def seen_prefixes() -> set[str]:
    found: set[str] = set()
    for k in kinds():
        found |= k.prefixes()
    return found


# -- processes -----------------------------------------------------------------------


def run_marks() -> dict[int, str]:
    """pid -> the HARNESS_RUN value in its environment, for every marked process but us."""
    mark = f"{ENV_MARK}=".encode()
    me = os.getpid()
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            env = Path(f"/proc/{entry.name}/environ").read_bytes()
        except OSError:
            continue
        for var in env.split(b"\0"):
            if var.startswith(mark):
                out[int(entry.name)] = var[len(mark):].decode(errors="replace")
                break
    return out


def marked_pids(prefix: str) -> list[int]:
    """Processes whose environment carries HARNESS_RUN=<prefix>."""
    return [pid for pid, mark in run_marks().items() if mark == prefix]


def _cgroup_pids(dirs: list[Path]) -> set[int]:
    pids: set[int] = set()
    for d in dirs:
        try:
            pids |= {int(x) for x in (d / "cgroup.procs").read_text().split()}
        except OSError:
            continue
    return pids


def in_container(pid: int) -> bool:
    """Whether `pid` lives in a PID namespace other than ours: only the Docker backend's
    containers make one, and a container's processes go with it (the containers kind)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid") != os.readlink("/proc/self/ns/pid")
    except OSError:
        return False


def run_pids(prefix: str) -> list[int]:
    """The run's processes: marked, or members of its cgroups (never us), but those in
    its containers. Killing a container's init from here made all of a run's containers
    exit at once, and concurrent exits deadlock Docker 20.10's network controller
    (moby/moby#46661, fixed by libnetwork#2679 after 20.10.24, which Debian ships): the
    daemon then hangs every later call. The containers kind removes them one by one."""
    pids = set(marked_pids(prefix)) | _cgroup_pids(cgroup_dirs(prefix))
    return sorted(p for p in pids - {os.getpid()} if not in_container(p))


def kill(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGCONT)  # a stopped process must be able to die
        os.kill(pid, signal.SIGKILL)
        return True
    except ProcessLookupError:
        return False


@dataclass(frozen=True)
class ProcessKind(ResourceKind):
    """Processes: found by their run mark, removed in rounds until forks are gone too."""

    def prefixes(self) -> set[str]:
        return {m for m in run_marks().values() if PREFIX_RE.fullmatch(m)}

    def remove_all(self, prefix: str) -> int:
        n = 0
        for _ in range(50):
            pids = self.find(prefix)
            if not pids:
                break
            n += sum(1 for pid in pids if self.remove(pid))
            time.sleep(0.02)
        return n


# -- names in the root namespace -----------------------------------------------------------


def _out(argv: list[str]) -> str:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return p.stdout if p.returncode == 0 else ""


def _ok(argv: list[str]) -> bool:
    return subprocess.run(argv, capture_output=True, timeout=30).returncode == 0


def named_netns(prefix: str) -> list[str]:
    names = [line.split()[0] for line in _out(["ip", "netns", "list"]).splitlines() if line]
    return [n for n in names if n.startswith(prefix)]


def root_links(prefix: str) -> list[str]:
    out = []
    for line in _out(["ip", "-o", "link", "show"]).splitlines():
        name = line.split(":", 2)[1].strip().split("@")[0]
        if name.startswith(prefix):
            out.append(name)
    return out


def nft_tables(prefix: str) -> list[tuple[str, str]]:
    out = []
    for line in _out(["nft", "list", "tables"]).splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].startswith(prefix):
            out.append((parts[1], parts[2]))
    return out


# -- cgroups -------------------------------------------------------------------------------


def cgroup_dirs(prefix: str) -> list[Path]:
    """The cgroups named `prefix...` in every hierarchy (v1) or the root (v2)."""
    out = []
    if not CGROUP_ROOT.is_dir():
        return out
    bases = [CGROUP_ROOT] + [p for p in CGROUP_ROOT.iterdir() if p.is_dir()]
    for base in bases:
        try:
            out += [p for p in base.iterdir() if p.is_dir() and p.name.startswith(prefix)]
        except OSError:
            continue
    return out


def run_cgroups(prefix: str) -> list[str]:
    """The run's cgroup directories, deepest first (the order they can be removed in)."""
    return [str(d) for d in sorted(cgroup_dirs(prefix), key=lambda d: len(d.parts),
                                   reverse=True)]


def rmdir_cgroup(d: str) -> bool:
    """A cgroup empties a moment after its last process is reaped: retry for 2 s."""
    for _ in range(100):
        try:
            os.rmdir(d)
            return True
        except FileNotFoundError:
            return False
        except OSError:
            time.sleep(0.02)
    return False


def temp_dirs(prefix: str) -> list[str]:
    """Directories in /tmp named `prefix...` (an emulated host's Ray node keeps its
    sockets and logs there)."""
    return sorted(str(p) for p in TEMP_DIR.glob(f"{prefix}*") if p.is_dir())


def rmtree(d: str) -> bool:
    shutil.rmtree(d, ignore_errors=True)
    return not os.path.exists(d)


register(ProcessKind("processes", run_pids, kill, order=10))
register(ResourceKind("netns", named_netns, lambda ns: _ok(["ip", "netns", "del", ns]),
                      order=20))
register(ResourceKind("links", root_links, lambda link: _ok(["ip", "link", "del", link]),
                      order=30))
register(ResourceKind("nft_tables", nft_tables,
                      lambda t: _ok(["nft", "delete", "table", t[0], t[1]]), order=40,
                      label=lambda t: t[1]))
register(ResourceKind("temp_dirs", temp_dirs, rmtree, order=50,
                      label=lambda d: Path(d).name))
register(ResourceKind("cgroups", run_cgroups, rmdir_cgroup, order=90,
                      label=lambda d: Path(d).name))
