"""Stage processes on loopback for the benchmarks and tests: free ports, start, stop.

Each stage is `python -m harness.stage` in this process's network namespace, listening
on loopback only; the caller owns it (`stop_stage`).
"""

from __future__ import annotations

import json
import selectors
import socket
import subprocess
import sys
import time

from harness.core.paths import REPO
from harness.pipeline.routing import LEAN_PORT_OFFSET


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now on ``host`` (the kernel's pick for a bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_lean_port() -> int:
    """A port free with its lean port (+ LEAN_PORT_OFFSET) too."""
    while True:
        p = free_port()
        if p + LEAN_PORT_OFFSET < 65536:
            try:
                socket.create_server(("127.0.0.1", p + LEAN_PORT_OFFSET)).close()
                return p
            except OSError:
                continue


def start_stage(*args: str, timeout: float = 20.0) -> tuple[subprocess.Popen, dict]:
    """Start `python -m harness.stage ARGS` and wait for its `{"serving": ...}` line.

    Returns (process, serving info). The caller owns the process (`stop_stage`);
    if it does not come up in ``timeout`` s it is killed and RuntimeError names
    its stderr.
    """
    proc = subprocess.Popen([sys.executable, "-m", "harness.stage", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        return proc, _wait_serving(proc, timeout)
    except BaseException:
        stop_stage(proc)
        raise


def _wait_serving(proc: subprocess.Popen, timeout: float) -> dict:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not sel.select(left):
                continue
            line = proc.stdout.readline()
            if not line:  # EOF: the process ended
                break
            if line.startswith('{"serving"'):
                return json.loads(line)["serving"]
    proc.kill()
    err = proc.communicate()[1].strip() if proc.stderr else ""
    raise RuntimeError(f"stage {proc.args[3:]} did not start (exit {proc.returncode}): "
                       f"{err.splitlines()[-1] if err else 'no output'}")


def stop_stage(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it is still there after 3 s; always reaped."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.communicate()


