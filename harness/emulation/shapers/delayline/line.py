"""The delay line itself: its links, the release heap and the single-threaded loop.

Each direction of a link reads frames from one packet socket and sends them on
the other; a frame with a delay waits in one time-ordered heap shared by every
link (its release time counts from the kernel's arrival stamp), and the loop
sends what is due, then waits in select() for the next release or the next frame.
"""

from __future__ import annotations

import heapq
import itertools
import os
import random
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.emulation.shapers.delayline.protocol import (
    DIRS,
    Counters,
    DirProps,
    parse_command,
    parse_props,
)

Reply = Callable[[dict[str, Any]], None]

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_IGNORE_OUTGOING = 23  # Linux >= 4.20: we never see our own transmissions
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33  # not exported by the socket module
SO_TIMESTAMPNS = 35
RECV_SIZE = 65536  # larger than any frame, so an oversize one fails visibly on send
SOCK_BUF = 1 << 20  # the kernel doubles it: ~900 full frames, near netem's limit of 1000
BATCH = 64  # frames per socket per loop turn, so a busy link can't starve releases
SPIN_S = 50e-6  # select() wakes ~50-100 us late on this VM: wake early, poll until due
FD_SETSIZE = 1024  # select() takes no higher fd: about 500 links per delay line
CLOSERS = 64  # threads closing sockets at exit (their grace-period waits overlap)


def sample_delay_ms(rng: random.Random, delay_ms: float, jitter_ms: float) -> float:
    """One frame's delay: uniform in [delay - jitter, delay + jitter], >= 0."""
    if jitter_ms <= 0:
        return delay_ms
    return max(0.0, delay_ms + rng.uniform(-jitter_ms, jitter_ms))


def is_lost(rng: random.Random, loss_pct: float) -> bool:
    """Independent Bernoulli drop with probability loss_pct / 100."""
    return loss_pct > 0 and rng.random() * 100.0 < loss_pct


@dataclass(slots=True, eq=False)
class Direction:
    inp: socket.socket
    out: socket.socket
    rng: random.Random
    props: DirProps
    c: Counters = field(default_factory=Counters)


def open_packet_socket(ifname: str) -> socket.socket:
    """Non-blocking raw socket on one interface, timestamping arrivals."""
    # Protocol 0 at creation: it captures nothing until bound to ifname below.
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        for force, opt in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
            try:  # root may exceed net.core.[rw]mem_max
                s.setsockopt(socket.SOL_SOCKET, force, SOCK_BUF)
            except OSError:
                s.setsockopt(socket.SOL_SOCKET, opt, SOCK_BUF)
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        # Bound with a protocol, the socket also resumes after the link goes down and up.
        s.bind((ifname, ETH_P_ALL))
        s.setblocking(False)
    except OSError:
        s.close()
        raise
    return s


class DelayLine:
    """All links, the release heap and the single-threaded event loop."""

    def __init__(self) -> None:
        self.links: dict[str, dict[str, Direction]] = {}
        self.socks: dict[str, socket.socket] = {}
        self.by_fd: dict[int, Direction] = {}
        self.fds: list[int] = [0]  # select() watches stdin and every socket
        self.heap: list[tuple[float, int, Direction, bytes]] = []
        self.seq = itertools.count()
        self.inbuf = b""

    def add(self, cmd: dict[str, Any]) -> None:
        name, a, b = cmd["link"], cmd["a"], cmd["b"]
        if name in self.links:
            raise ValueError(f"link {name} already exists")
        if used := {a, b} & set(self.socks):
            raise ValueError(f"interface {used.pop()} already in use")
        props = {d: parse_props(cmd.get(d, {})) for d in DIRS}
        socks: list[socket.socket] = []
        for ifname in (a, b):
            try:
                socks.append(open_packet_socket(ifname))
            except OSError as e:
                for s in socks:
                    s.close()
                raise ValueError(f"interface {ifname}: {e.strerror}") from None
        sa, sb = socks
        if max(sa.fileno(), sb.fileno()) >= FD_SETSIZE:
            sa.close()
            sb.close()
            raise ValueError(f"too many links for one delay line ({len(self.links)})")
        seed = cmd.get("seed", 0)
        fwd = Direction(sa, sb, random.Random(f"{seed}/fwd"), props["fwd"])
        rev = Direction(sb, sa, random.Random(f"{seed}/rev"), props["rev"])
        self.links[name] = {"fwd": fwd, "rev": rev}
        self.socks.update({a: sa, b: sb})
        self.by_fd.update({sa.fileno(): fwd, sb.fileno(): rev})
        self.fds = [0, *self.by_fd]

    def add_many(self, cmds: list[dict[str, Any]]) -> None:
        """All or nothing: a link that cannot be added takes the batch's others with it."""
        done: list[str] = []
        try:
            for cmd in cmds:
                self.add(cmd)
                done.append(cmd["link"])
        except ValueError as e:
            close_all([s for name in done for s in self.forget(name)])
            raise ValueError(f"link {cmd['link']}: {e} (none of {len(cmds)} added)") from None

    def forget(self, name: str) -> list[socket.socket]:
        """Drop a link that has carried nothing yet (its frames would stay queued); its
        sockets, for the caller to close."""
        link = self.links.pop(name)
        socks = [d.inp for d in link.values()]
        for s in socks:
            self.by_fd.pop(s.fileno(), None)
        self.socks = {i: s for i, s in self.socks.items() if s not in socks}
        self.fds = [0, *self.by_fd]
        return socks

    def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        if cmd["op"] == "add":
            self.add(cmd)
        elif cmd["op"] == "add_many":
            self.add_many(cmd["links"])
        elif cmd["op"] == "set":
            link = self.links.get(cmd["link"])
            if link is None:
                raise ValueError(f"unknown link {cmd['link']}")
            upd = {k: v for k, v in cmd.items() if k not in ("op", "link", "dir")}
            dirs = DIRS if cmd.get("dir", "both") == "both" else (cmd["dir"],)
            new = {d: parse_props(upd, link[d].props) for d in dirs}  # all or nothing
            for d, p in new.items():
                link[d].props = p
        elif cmd["op"] == "stats":
            return {"ok": True, "links": self.stats()}
        return {"ok": True}

    def stats(self) -> dict[str, dict[str, dict[str, int]]]:
        """Every link's counters; `queued` is kept as frames enter and leave the heap,
        so reading it costs nothing however many frames wait."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for name, link in self.links.items():
            out[name] = {}
            for k, d in link.items():
                # struct tpacket_stats {packets, drops}; reading resets it.
                raw = d.inp.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
                d.c.sock_drops += int.from_bytes(raw[4:8], sys.byteorder)
                out[name][k] = asdict(d.c)
        return out

    def _drain(self, d: Direction) -> None:
        """Read up to BATCH frames from d.inp; drop, queue or forward each."""
        c, p, rng, heap = d.c, d.props, d.rng, self.heap
        recv, recvmsg, send = d.inp.recv, d.inp.recvmsg, d.out.send
        stamped = p.delay_ms > 0 or p.jitter_ms > 0  # recvmsg costs ~15% of peak rate
        now = time.monotonic()
        off = time.time_ns() - time.monotonic_ns()  # kernel stamps are CLOCK_REALTIME
        anc: list[tuple[int, int, bytes]] = []
        for _ in range(BATCH):
            try:
                if stamped:
                    frame, anc, _, _ = recvmsg(RECV_SIZE, 64)
                else:
                    frame = recv(RECV_SIZE)
            except BlockingIOError:
                return
            except OSError as e:  # ENETDOWN, once, when an interface goes admin down
                print(f"delayline: recv: {e}", file=sys.stderr)
                return
            n = len(frame)
            c.rx_frames += 1
            c.rx_bytes += n
            if not p.up:
                c.down_frames += 1
                c.down_bytes += n
                continue
            if p.loss_pct and is_lost(rng, p.loss_pct):
                c.loss_frames += 1
                c.loss_bytes += n
                continue
            delay = sample_delay_ms(rng, p.delay_ms, p.jitter_ms) if p.jitter_ms else p.delay_ms
            if delay > 0:
                arrived = 0.0
                if anc and anc[0][1] == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", anc[0][2])
                    arrived = (sec * 1_000_000_000 + nsec - off) * 1e-9
                    if arrived > now:  # arrived during this batch
                        now = time.monotonic()
                if not now - 1.0 < arrived <= now:  # no stamp, or a clock step
                    arrived = now = time.monotonic()
                heapq.heappush(heap, (arrived + delay / 1000.0, next(self.seq), d, frame))
                c.queued += 1
                continue
            try:
                send(frame)
                c.fwd_frames += 1
                c.fwd_bytes += n
            except OSError as e:
                self._send_error(d, e)

    def _send_error(self, d: Direction, e: OSError) -> None:
        d.c.err_frames += 1
        if d.c.err_frames & (d.c.err_frames - 1) == 0:  # log the 1st, 2nd, 4th, 8th...
            print(f"delayline: send: {e} ({d.c.err_frames} errors)", file=sys.stderr)

    def _stdin(self, reply: Reply) -> bool:
        """Handle complete control lines; False means quit or EOF."""
        data = os.read(0, 65536)
        if not data:
            return False
        *lines, self.inbuf = (self.inbuf + data).split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            try:
                cmd = parse_command(line)
                reply(self.handle(cmd))
            except ValueError as e:
                reply({"ok": False, "error": str(e).replace("\n", " ")})
                continue
            if cmd["op"] == "quit":
                return False
        return True

    def run(self, reply: Reply) -> None:
        heap, pop, now_f = self.heap, heapq.heappop, time.monotonic
        while True:
            timeout = None
            if heap:
                now = now_f()
                while heap and heap[0][0] <= now:
                    _, _, d, frame = pop(heap)
                    d.c.queued -= 1  # sent or failed, it has left the queue
                    try:
                        d.out.send(frame)
                        d.c.fwd_frames += 1
                        d.c.fwd_bytes += len(frame)
                    except OSError as e:
                        self._send_error(d, e)
                if heap:
                    timeout = max(0.0, heap[0][0] - now_f() - SPIN_S)
            for fd in select.select(self.fds, (), (), timeout)[0]:
                if fd == 0:
                    if not self._stdin(reply):
                        return
                else:
                    self._drain(self.by_fd[fd])

    def close(self) -> None:
        close_all(list(self.socks.values()))
        self.socks.clear()


def close_all(socks: list[socket.socket]) -> None:
    """Close from up to CLOSERS threads at once: each close of a packet socket waits for an
    RCU grace period, and waits that overlap share one."""
    n = min(CLOSERS, len(socks))
    threads = [threading.Thread(target=lambda part=socks[i::n]: [s.close() for s in part])
               for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
