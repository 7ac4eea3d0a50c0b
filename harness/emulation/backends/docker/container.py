"""A node that is a container: its namespaces entered by PID (its cgroups: cgroups.py).

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

from harness.emulation.backends.base import EmuNode
from harness.emulation.backends.docker.cgroups import ContainerResources
from harness.emulation.cgroups import (
    started_joined,
)


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
