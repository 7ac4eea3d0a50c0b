"""Everything on this machine a run could create, whatever its name: a snapshot to diff.

`harness.emulation.inventory` finds what carries a run prefix, which is what
cleanup removes; a kill trial must not trust that, or a resource created without
the prefix would be invisible to both. So this lists every instance of each kind
(namespaces, root interfaces, nft tables, root qdiscs, cgroups, mounts, processes
in other namespaces or marked as a run's, containers, state files) and a trial
compares the sets before and after. Items of runs that are alive when the
snapshot is taken (someone else's work on a shared machine) are left out.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from harness.emulation.inventory import CGROUP_ROOT, ENV_MARK, FULL_PREFIX
from harness.emulation.ledger import load_ledgers, state_dir

CGROUP_DEPTH = 3  # the harness nests node cgroups at most this deep


def _out(argv: list[str]) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return p.stdout if p.returncode == 0 else ""


def netns() -> set[str]:
    return {line.split()[0] for line in _out(["ip", "netns", "list"]).splitlines() if line}


def root_links() -> set[str]:
    return {line.split(":", 2)[1].strip().split("@")[0]
            for line in _out(["ip", "-o", "link", "show"]).splitlines() if ":" in line}


def nft_tables() -> set[str]:
    return {line.strip() for line in _out(["nft", "list", "tables"]).splitlines() if line}


def root_qdiscs() -> set[str]:
    """Qdiscs of the root namespace by device and handle (those in a node namespace go
    with it)."""
    out = set()
    for line in _out(["tc", "qdisc", "show"]).splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0] == "qdisc":
            out.add(f"{parts[1]} {parts[2]} dev {parts[4]}")
    return out


def cgroups() -> set[str]:
    out = set()
    if not CGROUP_ROOT.is_dir():
        return out
    for dirpath, dirnames, _ in os.walk(CGROUP_ROOT):
        rel = Path(dirpath).relative_to(CGROUP_ROOT)
        if len(rel.parts) >= CGROUP_DEPTH:
            dirnames[:] = []
        # a container's own scope comes and goes with the container (listed there)
        dirnames[:] = [d for d in dirnames if not d.startswith("docker-")]
        if rel.parts:
            out.add(str(rel))
    return out


def mounts() -> set[str]:
    """Mount points (a leaked `ip netns` name is a bind mount under /run/netns)."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return set()
    return {line.split()[1] for line in lines if len(line.split()) > 1}


def _root_netns() -> str:
    return os.readlink("/proc/self/ns/net")  # we run in the host namespace


def processes() -> set[str]:
    """Processes that may be a run's: marked with its env mark, or living in a network
    namespace other than the host's. Named `pid:comm` (pids are not reused that fast)."""
    root = _root_netns()
    mark = f"{ENV_MARK}=".encode()
    out = set()
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        base = f"/proc/{entry.name}"
        try:
            ns = os.readlink(f"{base}/ns/net")
            env = Path(f"{base}/environ").read_bytes()
            comm = Path(f"{base}/comm").read_text().strip()
        except OSError:
            continue
        if ns != root or any(v.startswith(mark) for v in env.split(b"\0")):
            out.add(f"{entry.name}:{comm}")
    return out


def containers() -> set[str]:
    return {c for c in _out(["docker", "ps", "-a", "--format", "{{.Names}}"]).split() if c}


def state_files() -> set[str]:
    d = state_dir()
    return {p.name for p in d.iterdir()} if d.is_dir() else set()


KINDS = {"netns": netns, "links": root_links, "nft_tables": nft_tables,
         "qdiscs": root_qdiscs, "cgroups": cgroups, "mounts": mounts,
         "processes": processes, "containers": containers, "state_files": state_files}


def snapshot() -> dict[str, set[str]]:
    return {kind: find() for kind, find in KINDS.items()}


def live_prefixes() -> set[str]:
    return {led.prefix for led in load_ledgers() if led.owner_alive()}


def new_items(before: dict[str, set[str]], after: dict[str, set[str]],
              ignore_prefixes: set[str] = frozenset()) -> dict[str, list[str]]:
    """What `after` has that `before` had not, less items named by a live run's prefix
    (and processes of a live run, known by their mark)."""
    def foreign(item: str) -> bool:
        m = FULL_PREFIX.search(item)
        return bool(m and m.group(0) in ignore_prefixes)

    out = {}
    for kind in after:
        extra = sorted(i for i in after[kind] - before.get(kind, set()) if not foreign(i))
        if kind == "processes":
            extra = [i for i in extra if not _of_live_run(i, ignore_prefixes)]
        if extra:
            out[kind] = extra
    return out


def _of_live_run(item: str, live: set[str]) -> bool:
    """Whether the process belongs to a live run, or has exited since the snapshot (a
    process that is gone is not left behind)."""
    pid = item.split(":", 1)[0]
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return True
    mark = f"{ENV_MARK}=".encode()
    return any(v.startswith(mark) and v[len(mark):].decode() in live for v in env.split(b"\0"))


def dumps(items: dict[str, list[str]]) -> str:
    return json.dumps(items, sort_keys=True)
