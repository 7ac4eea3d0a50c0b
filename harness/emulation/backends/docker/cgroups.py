"""A container node's cgroups: where they are (v1 hierarchies or cgroup2), its limits as
`docker update` sets them, its usage and OOM kills, and its freezer for a hang. The node
itself, and how processes enter it, is container.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.emulation import freezer
from harness.emulation.cgroups import Joiner, joiner, read_cpu_usage_s, read_oom_kills
from harness.emulation.inventory import CGROUP_ROOT
from harness.emulation.resources import NodeResources

PERIOD_US = 100_000


def cgroup_dirs_of(pid: int) -> dict[str, Path]:
    """controller(s) -> cgroup directory of process `pid`, every hierarchy (v1 and v2)."""
    out = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if ctrls == "":
            out["unified"] = CGROUP_ROOT / path.lstrip("/")
        else:
            name = ctrls.removeprefix("name=")
            d = CGROUP_ROOT / name / path.lstrip("/")
            if not d.is_dir():  # co-mounted hierarchies: cpu,cpuacct -> /sys/fs/cgroup/cpu,cpuacct
                d = CGROUP_ROOT / ctrls / path.lstrip("/")
            out[ctrls] = d
    return {k: d for k, d in out.items() if (d / "cgroup.procs").exists()}


def _find(dirs: dict[str, Path], controller: str) -> Path:
    for ctrls, d in dirs.items():
        if controller in ctrls.split(",") or ctrls == "unified":
            return d
    raise RuntimeError(f"no {controller} cgroup among {sorted(dirs)}")


def _read_usage(dirs: dict[str, Path], v2: bool) -> float:
    try:
        return read_cpu_usage_s(_find(dirs, "cpu" if v2 else "cpuacct"), v2)
    except OSError:  # gone with its container (an image stage's)
        return 0.0


def _read_oom(dirs: dict[str, Path], v2: bool) -> int:
    try:
        return read_oom_kills(_find(dirs, "memory"), v2)
    except OSError:
        return 0


class ContainerResources(NodeResources):
    """The container's own cgroups; limits changed through the daemon (`docker update`),
    so `docker inspect` always shows what is in force. A hang freezes the container's
    cgroup2 directory (and its image stages'), not `docker pause`: on a v1 host that is
    the v1 freezer, which holds even SIGKILL until the unpause (`harness.emulation.freezer`)."""

    def __init__(self, container: Any, holder_pid: int) -> None:
        self.container = container
        self.name = container.name
        self.dirs = cgroup_dirs_of(holder_pid)
        self.v2 = list(self.dirs) == ["unified"]
        self.freeze_dir = freezer.v2_dir_of(holder_pid)
        if self.freeze_dir is None:
            self.no_freezer = freezer.NO_V2 if freezer.v2_root() is None else \
                "the container has no cgroup2 directory"
        # containers of image stages in this node: limited alike, counted as the node's
        self.sidecars: dict[str, tuple[Any, dict[str, Path]]] = {}
        self.sidecar_freeze: dict[str, Path | None] = {}
        self.limits: dict[str, Any] = {}

    def attach(self, key: str, container: Any) -> None:
        """Count a running container's processes, CPU time and OOM kills as the node's (and
        freeze it if the node is hung)."""
        container.reload()
        pid = int(container.attrs["State"]["Pid"])
        self.sidecars[key] = (container, cgroup_dirs_of(pid))
        self.sidecar_freeze[key] = freezer.v2_dir_of(pid)
        if self.limits:
            container.update(**self.limits)
        if freezer.is_frozen(self.freezer()):
            freezer.freeze(self.freezer())

    def freezer(self) -> list[Path]:
        if self.freeze_dir is None:
            return []
        return [self.freeze_dir, *(d for d in self.sidecar_freeze.values() if d is not None)]

    def _all(self) -> list[tuple[Any, dict[str, Path]]]:
        return [(self.container, self.dirs), *self.sidecars.values()]

    def _update(self, **limits: Any) -> None:
        self.limits.update(limits)
        for c, _ in self._all():
            c.update(**limits)

    def set_cpu(self, cores: float) -> None:
        # -1: no quota (0 would mean "leave as is" to the daemon)
        self._update(cpu_period=PERIOD_US, cpu_quota=int(cores * PERIOD_US) if cores > 0 else -1)

    def set_memory(self, mb: int) -> None:
        limit = f"{mb}m" if mb > 0 else -1
        self._update(mem_limit=limit, memswap_limit=limit)  # no swap

    def cpu_usage_s(self) -> float:
        return sum(_read_usage(dirs, self.v2) for _, dirs in self._all())

    def oom_kills(self) -> int:
        return sum(_read_oom(dirs, self.v2) for _, dirs in self._all())

    def pids(self) -> list[int]:
        out: set[int] = set()
        for _, dirs in self._all():
            d = _find(dirs, "pids" if not self.v2 else "cpu")
            try:
                out |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
            except OSError:  # an image stage's container that exited
                continue
        return sorted(out)

    def _procs_files(self) -> list[str]:
        # the hierarchies with controllers only: a `name=` hierarchy (v1's name=systemd)
        # limits nothing, and its directory of a running container was seen removed by the
        # host's agent, which failed the restart of a crashed node's stages (a CI run)
        return [str(d / "cgroup.procs") for k, d in self.dirs.items()
                if not k.startswith("name=")]

    def add(self, pid: int) -> None:
        for f in self._procs_files():
            Path(f).write_text(str(pid))

    def preexec(self) -> Joiner:
        """The launcher joins every cgroup of the container (its cgroup2 directory only
        after its exec while the node is frozen: `joiner`)."""
        return joiner(self._procs_files(), self.freezer()[:1])
