"""The zygote process: imports once what every node process imports, then forks them.

A stage or sensor spends most of its start importing numpy, grpc and the KServe
stubs (~0.25 s of CPU each, before it does anything); a run starts a dozen, and a
fleet hundreds. The zygote pays that once per run: each node process is a fork
of it that enters its node (network namespace, cgroups, session), takes its
stdio, environment and working directory, and runs its module as `python -m`
would, sharing the libraries' pages with its siblings.

One Python thread (a fork copies only the calling thread; numpy's OpenBLAS pool
stops itself around a fork and starts again in the child when used): it answers
spawn requests on a SOCK_SEQPACKET socket (JSON, stdio passed as file
descriptors), reaps its children and reports each exit status. It exits when
the socket closes; the children stay (they are their node's, removed with it).
ONNX Runtime is not imported here: it starts a thread of its own at import.
"""

from __future__ import annotations

import ctypes
import json
import os
import selectors
import signal
import socket
import sys
import time
import traceback

from harness.emulation.cgroups import join_cgroups
from harness.emulation.netdev import enter_netns

# what the node processes (`harness.*.node.*`) import before they do anything
PRELOAD = ("numpy", "grpc", "google.protobuf", "tritonclient.grpc")
PR_SET_NAME = 15
MAX_MSG = 1 << 20


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def status_of(wait_status: int) -> int:
    """Popen's returncode: the exit code, or minus the signal that killed it."""
    return os.waitstatus_to_exitcode(wait_status)


def enter(req: dict) -> None:
    """In the child: the node's network namespace and cgroups, a session of its own."""
    os.setsid()
    enter_netns(req["netns"])
    join_cgroups(req["cgroups"], str(os.getpid()).encode())
    name = req["argv"][0].rsplit(".", 1)[-1]
    ctypes.CDLL(None).prctl(PR_SET_NAME, f"hx-{name}"[:15].encode(), 0, 0, 0)


def run_child(req: dict, fds: list[int], report: int, private: list[int]) -> None:
    """The forked child: enter the node, say so on `report`, then be `python -m argv`.
    `private`: the zygote's own descriptors, not the child's business."""
    import runpy

    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in private:
            os.close(fd)
        enter(req)
        for i, fd in enumerate(fds):
            os.dup2(fd, i)
        for fd in set(fds):
            if fd > 2:
                os.close(fd)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
    except BaseException as e:  # noqa: BLE001 (told to the zygote, which tells the caller)
        os.write(report, f"{type(e).__name__}: {e}".encode()[:4000])
        os._exit(126)
    os.write(report, b"ok")
    os.close(report)
    module, *args = req["argv"]
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, int | None):
            print(e.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 (as python -m reports it)
        traceback.print_exc()
    finally:
        _exit_as_python_does(code)


def _exit_as_python_does(code: int) -> None:
    import atexit
    import threading

    try:
        threading._shutdown()  # type: ignore[attr-defined]  # waits for non-daemon threads
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code & 0xFF)


class Zygote:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.children: set[int] = set()
        self.private: list[int] = []  # the socket's, the selector's, the wake-up pipe's

    def spawn(self, req: dict, fds: list[int]) -> dict:
        r, w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            os.close(r)
            run_child(req, fds, w, [self.sock.fileno(), *self.private])
        os.close(w)
        with os.fdopen(r, "rb") as f:
            said = f.read().decode(errors="replace")
        if said != "ok":
            os.waitpid(pid, 0)
            return {"id": req["id"], "error": said or "the child died entering its node"}
        self.children.add(pid)
        return {"id": req["id"], "pid": pid}

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.send({"exit": pid, "status": status_of(status)})

    def send(self, msg: dict) -> None:
        self.sock.send(json.dumps(msg).encode())

    def serve(self) -> None:
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        sel.register(wake_r, selectors.EVENT_READ)
        self.private = [wake_r, wake_w, sel.fileno()]  # type: ignore[attr-defined]
        while True:
            for key, _ in sel.select():
                if key.fileobj is wake_r:
                    while True:
                        try:
                            os.read(wake_r, 512)
                        except BlockingIOError:
                            break
                    continue
                msg, fds, _flags, _addr = socket.recv_fds(self.sock, MAX_MSG, 3)
                if not msg:  # the run is gone: its nodes keep their processes
                    return
                try:
                    self.send(self.spawn(json.loads(msg), fds))
                finally:
                    for fd in fds:
                        os.close(fd)
            self.reap()


def main(argv: list[str]) -> int:
    sock = socket.socket(fileno=int(argv[0]))
    t = time.monotonic()
    for m in PRELOAD:
        __import__(m)
    z = Zygote(sock)
    z.send({"ready": True, "preload_s": round(time.monotonic() - t, 3), "threads": threads()})
    z.serve()
    return 0
