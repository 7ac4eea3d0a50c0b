"""Nodes on other hosts as the run's code sees nodes: `RemoteNode` is an `EmuNode` whose
processes, resources and faults are its host agent's, reached over Ray.

`popen` returns a `RemoteProcess`, which answers what the run asks of a Popen (poll,
wait, signals, a line of stdout, writes to stdin, the pid); a stdout or stderr given as
an open file goes to that file's path, which the host writes (the run's folder is on a
filesystem every emulated host shares).
"""

from __future__ import annotations

import signal
import subprocess
from typing import Any

from harness.emulation.backends.base import EmuNode
from harness.emulation.resources import NodeResources
from harness.emulation.tc import EmulationError


def _get(ref: Any, timeout: float | None = None) -> Any:
    import ray

    return ray.get(ref, timeout=timeout)


def first_line(e: BaseException) -> str:
    lines = [x for x in str(e).strip().splitlines() if x.strip()]
    return (lines[0] if lines else type(e).__name__)[:300]


def on_host(host: str, what: str, ref: Any, timeout: float | None = None) -> Any:
    """`ray.get(ref)`, an agent's failure (or death) named by its host."""
    try:
        return _get(ref, timeout)
    except Exception as e:
        if type(e).__name__ == "GetTimeoutError" or "TimeoutExpired" not in str(e):
            raise EmulationError(f"host {host}: {what}: {first_line(e)}") from None
        raise


class _Stdout:
    def __init__(self, proc: RemoteProcess) -> None:
        self.proc = proc

    def readline(self) -> str:
        return self.proc.call("readline")

    def __iter__(self):
        while True:
            line = self.readline()
            if not line:
                return
            yield line


class _Stdin:
    def __init__(self, proc: RemoteProcess) -> None:
        self.proc = proc

    def write(self, text: str) -> int:
        self.proc.call("write", text)
        return len(text)

    def flush(self) -> None:
        """Every write is flushed on the host."""

    def close(self) -> None:
        self.proc.call("close_stdin")


class RemoteProcess:
    """A process an agent started in one of its nodes."""

    def __init__(self, agent: Any, host: str, pid: int, piped_in: bool,
                 piped_out: bool) -> None:
        self.agent, self.host, self.pid = agent, host, pid
        self.returncode: int | None = None
        self.stdin = _Stdin(self) if piped_in else None
        self.stdout = _Stdout(self) if piped_out else None

    def call(self, op: str, *args: Any, timeout: float | None = None) -> Any:
        return on_host(self.host, f"process {self.pid}: {op}",
                       self.agent.proc.remote(self.pid, op, *args), timeout)

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.call("poll")
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            try:
                self.returncode = self.call("wait", timeout,
                                            timeout=None if timeout is None else timeout + 30)
            except Exception as e:  # the host's TimeoutExpired, as the caller expects it
                if "TimeoutExpired" in str(e):
                    raise subprocess.TimeoutExpired(str(self.pid), timeout or 0) from None
                raise
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.call("signal", int(sig))

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class RemoteResources(NodeResources):
    def __init__(self, node: RemoteNode) -> None:
        self.node, self.name = node, node.name

    def set_cpu(self, cores: float) -> None:
        self.node.call("set_cpu", cores)

    def set_memory(self, mb: int) -> None:
        self.node.call("set_memory", mb)

    def cpu_usage_s(self) -> float:
        return self.node.call("cpu_usage_s")

    def oom_kills(self) -> int:
        return self.node.call("oom_kills")

    def pids(self) -> list[int]:
        return self.node.call("pids")

    def add(self, pid: int) -> None:
        raise EmulationError(f"node {self.name}: a process joins a node on another host "
                             "only by being started there (popen)")


def _target(x: Any) -> str | None:
    """What a Popen stdout/stderr argument means to the host."""
    if x is None:
        return None
    if x == subprocess.PIPE:
        return "pipe"
    if x == subprocess.STDOUT:
        return "stdout"
    if hasattr(x, "name") and isinstance(x.name, str):
        return x.name
    raise ValueError(f"a remote node's process cannot write to {x!r}")


class RemoteNode(EmuNode):
    def __init__(self, name: str, ip: str, host: str, agent: Any, python: str) -> None:
        """`python`: the interpreter that runs harness code in the node, as its host has it."""
        self.name, self.ip, self.host, self.agent = name, ip, host, agent
        self.python = python
        self.resources = RemoteResources(self)

    def call(self, method: str, *args: Any) -> Any:
        return on_host(self.host, f"node {self.name}: {method}",
                       self.agent.node_call.remote(self.name, method, *args), 120)

    @property
    def ns_pid(self) -> int:
        raise RuntimeError(f"node {self.name} is on host {self.host}: no namespace here")

    def popen(self, argv: list[str], **kwargs: Any) -> RemoteProcess:
        stdin = kwargs.pop("stdin", None) == subprocess.PIPE
        out, err = _target(kwargs.pop("stdout", None)), _target(kwargs.pop("stderr", None))
        env = kwargs.pop("env", None)
        kwargs.pop("text", None)
        kwargs.pop("bufsize", None)
        if kwargs:
            raise ValueError(f"a remote node's popen takes no {sorted(kwargs)}")
        pid = on_host(self.host, f"node {self.name}: spawn",
                      self.agent.spawn.remote(self.name, argv, stdin, out, err, env), 120)
        return RemoteProcess(self.agent, self.host, pid, stdin, out == "pipe")

    def run(self, argv: list[str], input: str | None = None, timeout: float = 30) -> str:
        return self.call("run", argv, input, timeout)

    def net_run(self, argv: list[str], input: str | None = None, timeout: float = 30) -> str:
        return self.call("net_run", argv, input, timeout)

    def keep_pids(self) -> set[int]:
        return set()

    def processes(self) -> list[int]:
        return self.call("processes")

    def signal_all(self, sig: int) -> int:
        return self.call("signal_all", sig)

    def hang(self) -> dict[str, Any]:
        return self.call("hang")

    def resume(self) -> dict[str, Any]:
        return self.call("resume")

    def kill_all(self) -> int:
        return self.call("kill_all")

    def start_image(self, key: str, image: str, command: list[str] | None,
                    env: dict[str, str]) -> None:
        """A stage's server from its image, by the node's host (backend=docker)."""
        self.call("start_image", key, image, command, env)
