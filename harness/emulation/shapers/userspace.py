"""The userspace shaper: each link runs host a <-veth-> wire namespace <-veth-> host b,
and the delay line (`harness.emulation.shapers.delayline`, a process in the wire
namespace) bridges the two wire ends, holding each frame until its release time.

Every message to the line is built with its protocol module
(`harness.emulation.shapers.delayline.protocol`): the names, props and op strings
are the line's own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from typing import Any

from harness.emulation import netdev
from harness.emulation.shapers.base import Shaper
from harness.emulation.shapers.delayline import protocol
from harness.emulation.tc import DirState, EmulationError, run


class DelayLine:
    """Client of the delay-line process (`protocol.MODULE`) running in the wire namespace."""

    def __init__(self, netns: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-m", protocol.MODULE],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, bufsize=1,
        )
        self.lock = threading.Lock()
        hello = self._read()
        if hello != protocol.READY:
            raise EmulationError(f"delay line did not start: {hello}")

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise EmulationError(f"delay line exited (code {self.proc.poll()})")
        return json.loads(line)

    def call(self, cmd: dict[str, Any]) -> dict:
        """Send one command (built with `protocol`) and wait for its reply."""
        assert self.proc.stdin is not None
        with self.lock:
            self.proc.stdin.write(protocol.encode(cmd))
            self.proc.stdin.flush()
            reply = self._read()
        if not reply.get("ok"):
            raise EmulationError(f"delay line: {cmd.get('op')} {cmd.get('link', '')}: "
                                 f"{reply.get('error')}")
        return reply

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call(protocol.command("quit"))
            except (EmulationError, OSError, ValueError):
                pass
            try:  # it closes its sockets on the way out (in parallel: well under 1 s)
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _props(state: DirState) -> protocol.DirProps:
    """One direction as the line takes it: its props with None as 0, and up."""
    p = state.props
    return protocol.DirProps(p.delay_ms or 0.0, p.jitter_ms or 0.0, p.loss_pct or 0.0,
                             state.up)


class UserspaceShaper(Shaper):
    """Each link runs host a <-veth-> wire namespace <-veth-> host b; a delay line bridges."""

    name = "userspace"
    netem = False

    def __init__(self) -> None:
        self.ns = ""
        self.prefix = ""
        self.line: DelayLine | None = None

    def setup(self, prefix: str, env: dict[str, str], host: str = "") -> None:
        self.prefix = prefix
        self.ns = f"{prefix}{host}-wire"
        run(["ip", "netns", "add", self.ns])
        run(["ip", "-n", self.ns, "link", "set", "lo", "up"])
        self.line = DelayLine(self.ns, env)

    def peer(self, index: int, end: str, other_ns: str) -> tuple[str, str]:
        return f"{self.prefix}{index}{end}", self.ns

    def wire_up(self, links: list[tuple[str, str, str, DirState, DirState, int]]) -> None:
        """Wire ends: offloads off and up, from this process (no process per device), then
        one `add_many` to the delay line."""
        netdev.tune(f"/run/netns/{self.ns}", {}, [dev for _, pa, pb, *_ in links
                                                  for dev in (pa, pb)], up=True)
        assert self.line is not None
        if links:
            self.line.call(protocol.add_many([
                protocol.link_spec(name, pa, pb, seed, _props(fwd), _props(rev))
                for name, pa, pb, fwd, rev, seed in links]))

    def apply(self, link: str, direction: str, state: DirState, end_dev: tuple) -> None:
        assert self.line is not None
        self.line.call(protocol.set_props(link, direction, _props(state)))

    def stats(self) -> dict:
        return self.line.call(protocol.command("stats"))["links"] if self.line else {}

    def stop(self) -> None:
        if self.line:
            self.line.stop()
            self.line = None
        if self.ns:
            subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
            self.ns = ""

