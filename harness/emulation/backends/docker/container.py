"""A node that is a container: its namespaces entered by PID, its cgroups, its limits.

Processes the harness starts in a node run inside the container: `nsenter` joins
the container's mount, UTS, IPC, network and PID namespaces, the launcher joins
every cgroup of the container before it execs (so the container's CPU, memory
and pids limits and its accounting cover them), and `setpriv` inside the
container caps them at the container's own capability bounding set. No `docker
exec` round trip (about 100 ms each), and the Popen behaves like a local one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.emulation import freezer
from harness.emulation.backends.base import EmuNode
from harness.emulation.cgroups import (
    Joiner,
    joiner,
    read_cpu_usage_s,
    read_oom_kills,
    started_joined,
)
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


def _state(pid: int) -> str:
    """The process's state letter (R running, S sleeping, T stopped, ...); "" if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def _stopped(pid: int) -> bool:
    return _state(pid) == "T"


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class EnteredPopen(subprocess.Popen):
    """`nsenter` forks to enter the PID namespace and waits for its child, exiting with
    the child's status (re-raising the signal that killed it). Signals sent through this
    Popen go to the child, the process the caller started; SIGKILL goes to both. nsenter
    stops itself when its child stops and resumes it when continued, so the launcher is
    continued after any signal (else it could not reap the child)."""

    def child_pid(self) -> int | None:
        try:
            kids = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            return None
        return int(kids[0]) if kids else None

    def send_signal(self, sig: int) -> None:
        if self.returncode is not None:
            return
        child = self.child_pid()
        if child is not None:
            _kill(child, sig)
        if child is None or sig == signal.SIGKILL:
            _kill(self.pid, sig)
        elif _stopped(self.pid):
            _kill(self.pid, signal.SIGCONT)


class DockerNode(EmuNode):
    def __init__(self, container: Any, ip: str, env: dict[str, str], caps: list[str],
                 python: str, cwd: str,
                 run_image: Callable[..., Any] | None = None) -> None:
        self.run_image = run_image
        self.container = container
        self.name = container.labels.get("hx.node", container.name)
        self.ip = ip
        self.env = env
        self.python = python
        self.cwd = cwd
        container.reload()
        self.holder = int(container.attrs["State"]["Pid"])
        self.resources = ContainerResources(container, self.holder)
        self.held = set(self.resources.pids())  # docker-init and the sleeping holder
        self.launched: set[int] = set()  # pids of the nsenter launchers started here
        bounding = ",".join(["-all", *(f"+{c.lower()}" for c in caps)])
        self.enter = ["nsenter", "-t", str(self.holder), "-m", "-u", "-i", "-n", "-p",
                      f"--wdns={cwd}", "--", "setpriv", f"--bounding-set={bounding}",
                      "--no-new-privs", "--"]

    @property
    def ns_pid(self) -> int:
        return self.holder

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen:
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        env = {**self.env, **(kwargs.pop("env", None) or {})}
        join = self.resources.preexec()
        p = started_joined(join, lambda: EnteredPopen([*self.enter, *argv], env=env,
                                                      preexec_fn=join, **kwargs), self.name)
        self.launched.add(p.pid)
        return p

    def keep_pids(self) -> set[int]:
        return self.held

    def hang(self) -> dict[str, Any]:
        """As for any node; `stopped` counts the processes started in it, not their
        launchers (frozen with them)."""
        detail = super().hang()
        if detail["via"] == "cgroup.freeze":
            detail["stopped"] = len(set(self.processes()) - self.launchers())
        return detail

    def resume(self) -> dict[str, Any]:
        detail = super().resume()
        if detail["via"] == "cgroup.freeze":
            detail["resumed"] = len(set(self.processes()) - self.launchers())
        return detail

    def launchers(self) -> set[int]:
        """The node's live `nsenter` launchers (host PID namespace, in its cgroups). Known
        by pid, not by name: a child just forked by nsenter is still called nsenter."""
        self.launched &= set(self.processes())
        return set(self.launched)

    def sigstop(self) -> int:
        """(A hang without a freezer.) SIGSTOP the node's processes but not the launchers:
        nsenter stops itself when its child stops (and must be continued after it, see
        `sigcont`). The freezer stops launchers and children alike."""
        launchers, n = self.launchers(), 0
        for pid in self.processes():
            if pid not in launchers:
                _kill(pid, signal.SIGSTOP)
                n += 1
        return n

    def sigcont(self) -> int:
        """SIGCONT the processes, then the launchers until each is back asleep in its
        wait for the child (state S). A launcher that saw its child stop may stop itself
        a moment later, even after this SIGCONT, if a busy machine delays it; a stopped
        launcher, continued, continues its child too."""
        launchers, n = self.launchers(), 0
        for pid in self.processes():
            if pid not in launchers:
                _kill(pid, signal.SIGCONT)
                n += 1
        deadline = time.monotonic() + 2.0
        while launchers and time.monotonic() < deadline:
            for pid in launchers:
                _kill(pid, signal.SIGCONT)
            time.sleep(0.005)
            launchers = {p for p in launchers if _state(p) not in ("S", "", "Z")}
        return n

    def start_image(self, key: str, image: str, command: list[str] | None,
                    env: dict[str, str]) -> None:
        """The image's server as a container sharing this node's network namespace;
        started again if a fault stopped it."""
        old = self.resources.sidecars.get(key)
        if old is not None:
            old[0].reload()
            if old[0].status != "running":
                old[0].start()
            self.resources.attach(key, old[0])
            return
        assert self.run_image is not None
        self.resources.attach(key, self.run_image(self, key, image, command, env))
