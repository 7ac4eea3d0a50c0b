"""What a run created, under one run-unique prefix, and how to remove exactly that.

Every namespace, interface, cgroup and nft table a run creates is named
`<prefix>...` (prefix = "hx" + 6 hex digits) and every process it starts
carries `HARNESS_RUN=<prefix>` in its environment and sits in the run's
cgroups. A state file in /run/harness (0600) names the owner process, so
`python -m harness.emulation.cleanup` can tell a dead run's leftovers from a live run's.
Normal teardown and crash cleanup are the same function: `remove_run`, which
goes through every resource kind registered in `harness.emulation.inventory`
(a backend registers its own kinds, e.g. containers, with `register`).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.core.files import write_text_atomic
from harness.emulation.inventory import (
    CGROUP_ROOT,
    ENV_MARK,
    PREFIX_RE,
    ResourceKind,
    find_all,
    register,
    remove_all,
)

__all__ = ["CGROUP_ROOT", "ENV_MARK", "PREFIX_RE", "Ledger", "ResourceKind", "leftovers",
           "load_ledgers", "register", "remove_run", "state_dir"]


STATE_MODE = 0o600


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
        state_dir().mkdir(mode=0o700, parents=True, exist_ok=True)
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
        # root's business alone, whoever may read the results: it names the owner process
        write_text_atomic(self.path, json.dumps(asdict(self), indent=1), mode=STATE_MODE)

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


# -- what a prefix owns: every registered resource kind (harness.emulation.inventory) ------


def leftovers(prefix: str) -> dict[str, list]:
    """Everything on this machine that carries `prefix`, by kind (for clean and for tests)."""
    return find_all(prefix)


def remove_run(prefix: str) -> dict[str, int]:
    """Remove everything of `prefix`, kind by kind in registry order; then its state file."""
    if not PREFIX_RE.match(prefix):
        raise ValueError(f"not a harness run prefix: {prefix!r}")
    counts = remove_all(prefix)
    try:
        (state_dir() / f"{prefix}.json").unlink()
    except FileNotFoundError:
        pass
    return counts
