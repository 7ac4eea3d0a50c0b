"""The userspace shaper: each link runs host a <-veth-> wire namespace <-veth-> host b,
and the delay line (`harness.emulation.shapers.delayline`, a process in the wire
namespace) bridges the two wire ends, holding each frame until its release time.

Every message to the line is built with its protocol module
(`harness.emulation.shapers.delayline.protocol`): the names, props and op strings
are the line's own.

One line process serves at most LINKS_PER_LINE links (it waits in select(), whose
microsecond timeout epoll lacks, and select() takes no fd above 1023): a larger
network gets as many lines as it needs, in the same wire namespace, each link
served by one of them. No link cap, and each line's precision is unchanged.
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


# links per delay-line process: two sockets each, below select()'s 1024 fds with room
LINKS_PER_LINE = 400


class UserspaceShaper(Shaper):
    """Each link runs host a <-veth-> wire namespace <-veth-> host b; a delay line bridges."""

    name = "userspace"
    netem = False

    def __init__(self) -> None:
        self.ns = ""
        self.prefix = ""
        self.env: dict[str, str] = {}
        self.lines: list[DelayLine] = []
        self.counts: list[int] = []  # links each line serves
        self.line_of: dict[str, DelayLine] = {}

    @property
    def line(self) -> DelayLine | None:
        """The first line (the only one up to LINKS_PER_LINE links)."""
        return self.lines[0] if self.lines else None

    def setup(self, prefix: str, env: dict[str, str], host: str = "") -> None:
        self.prefix = prefix
        self.ns = f"{prefix}{host}-wire"
        self.env = env
        run(["ip", "netns", "add", self.ns])
        run(["ip", "-n", self.ns, "link", "set", "lo", "up"])
        self.lines, self.counts = [DelayLine(self.ns, env)], [0]

    def peer(self, index: int, end: str, other_ns: str) -> tuple[str, str]:
        return f"{self.prefix}{index}{end}", self.ns

    def wire_up(self, links: list[tuple[str, str, str, DirState, DirState, int]]) -> None:
        """Wire ends: offloads off and up, from this process (no process per device), then
        one `add_many` to the delay line."""
        netdev.tune(f"/run/netns/{self.ns}", {}, [dev for _, pa, pb, *_ in links
                                                  for dev in (pa, pb)], up=True)
        assert self.lines, "setup() first"
        todo = list(links)
        while todo:
            if self.counts[-1] >= LINKS_PER_LINE:
                self.lines.append(DelayLine(self.ns, self.env))
                self.counts.append(0)
            line = self.lines[-1]
            batch, todo = todo[:LINKS_PER_LINE - self.counts[-1]], todo[LINKS_PER_LINE
                                                                       - self.counts[-1]:]
            line.call(protocol.add_many([
                protocol.link_spec(name, pa, pb, seed, _props(fwd), _props(rev))
                for name, pa, pb, fwd, rev, seed in batch]))
            self.counts[-1] += len(batch)
            self.line_of.update({name: line for name, *_ in batch})

    def apply(self, link: str, direction: str, state: DirState, end_dev: tuple) -> None:
        line = self.line_of.get(link)
        if line is None:
            raise EmulationError(f"delay line: no link {link}")
        line.call(protocol.set_props(link, direction, _props(state)))

    def stats(self) -> dict:
        out: dict = {}
        for line in self.lines:
            out.update(line.call(protocol.command("stats"))["links"])
        return out

    def processes(self) -> list[int]:
        return [line.proc.pid for line in self.lines]

    def stop(self) -> None:
        """The lines stop together: each closes its sockets (a grace period each) on exit."""
        threads = [threading.Thread(target=line.stop) for line in self.lines]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.lines, self.counts, self.line_of = [], [], {}
        if self.ns:
            subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
            self.ns = ""

