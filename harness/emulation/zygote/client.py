"""The harness's side of the zygote: start it, ask it for node processes, follow them.

`Zygote.spawn` returns a `Forked`, which does for a fork of the zygote what the
harness does with a node process's `Popen` (pid, poll, wait, signals, pipes):
the rest of the harness cannot tell them apart. The zygote reaps its children and
reports each exit status; a status it could not report (the zygote died first)
is `LOST_STATUS`, never a made-up signal.
"""

from __future__ import annotations

import collections
import io
import json
import os
import re
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

from harness.emulation.tc import EmulationError
from harness.emulation.zygote.server import MAX_MSG

# modules run inside an emulated node (the `node` sub-packages); only these are forked
NODE_MODULE = re.compile(r"harness(\.\w+)*\.node\.\w+")
LOST_STATUS = 255
READY_TIMEOUT_S = 60.0
STDIO_KW = {"stdin", "stdout", "stderr", "text", "env", "cwd"}


def forkable(argv: list[str], python: str, kwargs: dict[str, Any]) -> bool:
    """`python -m <a node module> ...` with no Popen option the zygote does not give."""
    return (len(argv) >= 3 and argv[0] == python and argv[1] == "-m"
            and NODE_MODULE.fullmatch(argv[2]) is not None and set(kwargs) <= STDIO_KW)


class Forked:
    """A node process forked by the zygote, with the `Popen` interface the harness uses."""

    def __init__(self, zygote: Zygote, pid: int, args: list[str], stdin: Any, stdout: Any,
                 stderr: Any) -> None:
        self.zygote, self.pid, self.args = zygote, pid, args
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.returncode: int | None = None
        self._readers: list[threading.Thread] | None = None  # communicate's
        self._output: dict[str, Any] = {}

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.zygote.status(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self.zygote.wait(self.pid, timeout)
            if self.returncode is None:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self.returncode

    def communicate(self, input: Any = None, timeout: float | None = None) -> tuple[Any, Any]:
        """As Popen's: after a TimeoutExpired, call again (e.g. after kill) for the rest."""
        if self._readers is None:
            self._readers = []
            for name, f in (("out", self.stdout), ("err", self.stderr)):
                if f is not None:
                    t = threading.Thread(target=self._read_all, args=(name, f), daemon=True)
                    t.start()
                    self._readers.append(t)
            if self.stdin is not None:
                try:
                    if input:
                        self.stdin.write(input)
                    self.stdin.close()
                except BrokenPipeError:  # it did not read it all: as Popen, not an error
                    pass
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._readers:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return self._output.get("out"), self._output.get("err")

    def _read_all(self, name: str, f: Any) -> None:
        self._output[name] = f.read()
        f.close()

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        import signal

        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        import signal

        self.send_signal(signal.SIGTERM)


class Zygote:
    """One zygote process (started at once; a spawn waits until it has imported)."""

    def __init__(self, python: str, env: dict[str, str]) -> None:
        """`env`: the zygote's, which /proc shows for each of its children too (the run's
        mark, by which `harness.clean` finds them)."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [python, "-m", "harness.emulation.zygote", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        finally:
            theirs.close()
        self.said: collections.deque[str] = collections.deque(maxlen=5)  # its last words
        self.sock = mine
        self.cond = threading.Condition()
        self.ready: dict | None = None
        self.gone = False
        self.replies: dict[int, dict] = {}
        self.statuses: dict[int, int] = {}
        self.next_id = 0
        self.send_lock = threading.Lock()
        threading.Thread(target=self._read, name="zygote", daemon=True).start()
        self.err_reader = threading.Thread(target=self._stderr, name="zygote-stderr",
                                           daemon=True)
        self.err_reader.start()

    def _stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if line.strip():
                self.said.append(line.decode(errors="replace").strip())

    # -- messages from the zygote ---------------------------------------------------------

    def _read(self) -> None:
        while True:
            try:
                msg = self.sock.recv(MAX_MSG)
            except OSError:
                msg = b""
            with self.cond:
                if not msg:
                    self.gone = True
                    self.cond.notify_all()
                    return
                m = json.loads(msg)
                if "ready" in m:
                    self.ready = m
                elif "exit" in m:
                    self.statuses[m["exit"]] = m["status"]
                else:
                    self.replies[m["id"]] = m
                self.cond.notify_all()

    def _await(self, what, timeout: float | None, why: str) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while (got := what()) is None:
                if self.gone:
                    raise self._dead(why)
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self.cond.wait(left)
            return got

    def _dead(self, why: str) -> EmulationError:
        self.err_reader.join(timeout=2)  # its last words, before it went
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = None
        last = self.said[-1] if self.said else ""
        return EmulationError(f"zygote: exited ({code}) {why}: {last}".rstrip(": "))

    # -- what the backend asks --------------------------------------------------------------

    def spawn(self, argv: list[str], netns: str, cgroups: list[str], env: dict[str, str],
              cwd: str | None, stdin: Any = None, stdout: Any = None, stderr: Any = None,
              text: bool = False) -> Forked:
        """Fork `python -m argv[2] argv[3:]` into the node whose network namespace is
        `netns` and whose cgroups' `cgroup.procs` files are `cgroups`."""
        if self._await(lambda: self.ready, READY_TIMEOUT_S, "while importing") is None:
            raise EmulationError(f"zygote: not ready after {READY_TIMEOUT_S:.0f}s")
        theirs, opened, ours = _stdio(stdin, stdout, stderr)
        try:
            with self.send_lock:
                self.next_id += 1
                rid = self.next_id
                req = {"id": rid, "argv": argv[2:], "netns": netns, "cgroups": cgroups,
                       "env": env, "cwd": cwd or os.getcwd()}
                socket.send_fds(self.sock, [json.dumps(req).encode()], theirs)
        except OSError:
            _close(ours)
            raise self._dead(f"before forking {argv[2]}") from None
        except BaseException:
            _close(ours)
            raise
        finally:
            for fd in opened:  # the child has its own copies now
                os.close(fd)
        reply = self._await(lambda: self.replies.pop(rid, None), None, f"forking {argv[2]}")
        if "error" in reply:
            _close(ours)
            raise EmulationError(f"{argv[2]}: {reply['error']}")
        wrap = [_wrap(f, mode, text) for f, mode in zip(ours, ("wb", "rb", "rb"), strict=True)]
        return Forked(self, reply["pid"], argv, *wrap)

    def _ended(self, pid: int) -> int | None:
        """(Under `cond`.) Its exit status, LOST_STATUS if it is gone with the zygote
        before the zygote could say how, or None while it runs."""
        if pid in self.statuses:
            return self.statuses[pid]
        return LOST_STATUS if self.gone and not Path(f"/proc/{pid}").exists() else None

    def status(self, pid: int) -> int | None:
        with self.cond:
            return self._ended(pid)

    def wait(self, pid: int, timeout: float | None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            with self.cond:
                got = self._ended(pid)
                if got is not None or left == 0:
                    return got
                # after the zygote is gone nothing will notify: look again now and then
                self.cond.wait(0.05 if self.gone else left)

    def close(self) -> None:
        """The zygote exits (its children are their nodes' business)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.sock.close()


def _stdio(stdin: Any, stdout: Any, stderr: Any
           ) -> tuple[list[int], list[int], list[BinaryIO | None]]:
    """The child's fds 0-2 (to send), those of them opened here (to close once sent), and
    our ends of its pipes (None where there is none), as Popen would make them."""
    theirs: list[int] = []
    opened: list[int] = []
    ours: list[BinaryIO | None] = []
    for i, spec in enumerate((stdin, stdout, stderr)):
        if spec is subprocess.STDOUT and i == 2:
            theirs.append(theirs[1])
            ours.append(None)
        elif spec is subprocess.PIPE:
            r, w = os.pipe2(os.O_CLOEXEC)
            child, mine = (r, w) if i == 0 else (w, r)
            theirs.append(child)
            opened.append(child)
            ours.append(os.fdopen(mine, "wb" if i == 0 else "rb"))
        elif spec is subprocess.DEVNULL:
            fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            theirs.append(fd)
            opened.append(fd)
            ours.append(None)
        elif spec is None:  # inherited, as Popen does
            theirs.append(i)
            ours.append(None)
        else:
            theirs.append(spec if isinstance(spec, int) else spec.fileno())
            ours.append(None)
    return theirs, opened, ours


def _close(files: list[BinaryIO | None]) -> None:
    for f in files:
        if f is not None:
            f.close()


def _wrap(f: BinaryIO | None, mode: str, text: bool) -> Any:
    """Popen's text pipes: its stdin writes through to the (buffered) pipe."""
    if f is None or not text:
        return f
    return io.TextIOWrapper(f, write_through=mode == "wb")  # type: ignore[arg-type]
