"""What a run created, under one run-unique prefix, and how to remove exactly that.

Every namespace, interface, cgroup and nft table a run creates is named
`<prefix>...` (prefix = "hx" + 6 hex digits) and every process it starts
carries `HARNESS_RUN=<prefix>` in its environment and sits in the run's
cgroups. A state file in /run/harness names the owner process, so
`python -m harness.emulation.cleanup` can tell a dead run's leftovers from a live run's.
Normal teardown and crash cleanup are the same function: `remove_run`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.core.files import write_text_atomic

ENV_MARK = "HARNESS_RUN"
PREFIX_RE = re.compile(r"^hx[0-9a-f]{6}")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def state_dir() -> Path:
    return Path(os.environ.get("HARNESS_STATE_DIR", "/run/harness"))


def _start_time(pid: int) -> int | None:
    """Kernel start time of `pid` (clock ticks since boot): tells a pid from its reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclass
class Ledger:
    """The state file of one run."""

    prefix: str
    owner_pid: int
    owner_start: int | None
    created_s: float
    notes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def new(cls) -> Ledger:
        state_dir().mkdir(parents=True, exist_ok=True)
        while True:
            prefix = "hx" + secrets.token_hex(3)
            if not (state_dir() / f"{prefix}.json").exists():
                break
        led = cls(prefix, os.getpid(), _start_time(os.getpid()), time.time())
        led.save()
        return led

    @property
    def path(self) -> Path:
        return state_dir() / f"{self.prefix}.json"

    def save(self) -> None:
        write_text_atomic(self.path, json.dumps(asdict(self), indent=1))

    def owner_alive(self) -> bool:
        return self.owner_start is not None and _start_time(self.owner_pid) == self.owner_start

    def env(self) -> dict[str, str]:
        """Environment for every process the run starts."""
        return {**os.environ, ENV_MARK: self.prefix}


def load_ledgers() -> list[Ledger]:
    out = []
    for path in sorted(state_dir().glob("hx*.json")):
        try:
            out.append(Ledger(**json.loads(path.read_text())))
        except (OSError, ValueError, TypeError):
            continue
    return out


# -- finding what a prefix owns ------------------------------------------------------


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


def cgroup_dirs(prefix: str) -> list[Path]:
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


def _cgroup_pids(dirs: list[Path]) -> set[int]:
    pids: set[int] = set()
    for d in dirs:
        try:
            pids |= {int(x) for x in (d / "cgroup.procs").read_text().split()}
        except OSError:
            continue
    return pids


def _run(argv: list[str]) -> str:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    return p.stdout if p.returncode == 0 else ""


def named_netns(prefix: str) -> list[str]:
    names = [line.split()[0] for line in _run(["ip", "netns", "list"]).splitlines() if line]
    return [n for n in names if n.startswith(prefix)]


def root_links(prefix: str) -> list[str]:
    out = []
    for line in _run(["ip", "-o", "link", "show"]).splitlines():
        name = line.split(":", 2)[1].strip().split("@")[0]
        if name.startswith(prefix):
            out.append(name)
    return out


def nft_tables(prefix: str) -> list[tuple[str, str]]:
    out = []
    for line in _run(["nft", "list", "tables"]).splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].startswith(prefix):
            out.append((parts[1], parts[2]))
    return out


def leftovers(prefix: str) -> dict[str, list]:
    """Everything on this machine that carries `prefix` (for clean and for tests)."""
    cgs = cgroup_dirs(prefix)
    return {
        "processes": sorted(set(marked_pids(prefix)) | _cgroup_pids(cgs)),
        "netns": named_netns(prefix),
        "links": root_links(prefix),
        "nft_tables": nft_tables(prefix),
        "cgroups": [str(p) for p in cgs],
    }


def remove_run(prefix: str) -> dict[str, int]:
    """Remove every process, namespace, interface, nft table and cgroup of `prefix`."""
    if not PREFIX_RE.match(prefix):
        raise ValueError(f"not a harness run prefix: {prefix!r}")
    counts = {"processes": 0, "netns": 0, "links": 0, "nft_tables": 0, "cgroups": 0}
    cgs = cgroup_dirs(prefix)
    for _ in range(50):
        pids = (set(marked_pids(prefix)) | _cgroup_pids(cgs)) - {os.getpid()}
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)  # a stopped process must be able to die
                os.kill(pid, signal.SIGKILL)
                counts["processes"] += 1
            except ProcessLookupError:
                pass
        time.sleep(0.02)
    for ns in named_netns(prefix):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        counts["netns"] += 1
    for link in root_links(prefix):
        subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=30)
        counts["links"] += 1
    for family, table in nft_tables(prefix):
        subprocess.run(["nft", "delete", "table", family, table], capture_output=True, timeout=30)
        counts["nft_tables"] += 1
    # Deepest first; a cgroup empties a moment after its last process is reaped.
    for d in sorted(cgs, key=lambda p: len(p.parts), reverse=True):
        for _ in range(100):
            try:
                d.rmdir()
                counts["cgroups"] += 1
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)
    try:
        (state_dir() / f"{prefix}.json").unlink()
    except FileNotFoundError:
        pass
    return counts
