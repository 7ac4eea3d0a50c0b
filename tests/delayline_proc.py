"""The delay line (harness.emulation.shapers.delayline) as a child process speaking its
line protocol: shared by the delay-line tests with and without namespaces."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


class Proc:
    """A running delayline with line-oriented request/reply over pipes."""

    def __init__(self, argv: list[str]) -> None:
        self.p = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,  # stderr is inherited: logs show up in pytest's report
            cwd=REPO,
            env=ENV,
            bufsize=0,
        )
        self.buf = b""
        assert self.readline() == {"ok": True, "ready": True}

    def readline(self, timeout: float = 10.0) -> dict[str, Any]:
        assert self.p.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.p.stdout], [], [], left)[0]:
                raise TimeoutError("no reply from delayline")
            chunk = os.read(self.p.stdout.fileno(), 65536)
            if not chunk:
                raise EOFError("delayline exited")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, obj: dict[str, Any] | str) -> dict[str, Any]:
        assert self.p.stdin is not None
        self.p.stdin.write(((obj if isinstance(obj, str) else json.dumps(obj)) + "\n").encode())
        return self.readline()

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
