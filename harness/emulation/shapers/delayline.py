"""Userspace delay line: netem-like delay, jitter and loss between veth pairs.

One module on purpose (about 490 lines): it is a standalone process in the wire
namespace that imports nothing from the harness (fast start, no dependencies in
the hot path), and its timing loop reads best in one place.

The kernel here has no sch_netem, so this process, run inside a dedicated
"wire" network namespace, bridges pairs of interfaces with AF_PACKET raw
sockets and holds each frame in a time-ordered heap until its release time.
It is transparent to any Ethernet traffic (ARP, TCP, UDP, ...). Turn offloads
off as ``ethtool -K IF tso off gso off gro off tx off`` does, on both ends of
each veth (the harness does it with ioctls: ``harness.emulation.netdev``);
``tx off`` on the hosts' ends is required: with checksum offload the sender
leaves checksums unfilled and the far host drops what we re-send (nothing
gets through). It also stops TSO/GSO super-frames, which exceed the MTU and
fail to send (``err_frames``).

Semantics, per link and direction:

* ``fwd``: frames arriving on interface ``a`` leave on ``b``; ``rev``: frames
  arriving on ``b`` leave on ``a``.
* ``delay_ms``: one-way delay. ``jitter_ms``: each frame's delay is uniform in
  [delay - jitter, delay + jitter], clamped at 0 (netem ``delay D J`` without
  a distribution table), so frames may reorder as in netem.
* ``loss_pct``: independent per-frame drop probability, in percent.
* ``up``: false drops every arriving frame (a powered-off peer; carrier up).
* A ``set`` applies to frames read after it (normally microseconds after
  they arrive); frames already queued keep their release time and are still
  delivered.
* Loss and jitter draw from a ``random.Random`` per direction seeded with
  ``"<seed>/fwd"`` or ``"<seed>/rev"``, so runs are reproducible.

Timing: a delay counts from the kernel's arrival timestamp (SO_TIMESTAMPNS),
not from when this process read the frame. Waits use select(), whose float
timeout has microsecond resolution (epoll rounds up to whole ms, and
sleeping the remainder would delay reads), with timer slack 1 ns, waking
SPIN_S early and polling until due. gc.freeze() after start-up avoids ~5 ms
collections. SCHED_FIFO (``--rt-priority N``, default 10, 0 = off) keeps
busy CPUs from delaying the line, as netem in softirq is not delayed.
Queued frames have no limit (netem's default is 1000); the kernel receive
buffer (SOCK_BUF) overflows only when this process is the bottleneck.

Control protocol: JSON lines on stdin, one JSON reply line on stdout each;
``{"ok": true, "ready": true}`` once started.

* ``{"op": "add", "link": "l0", "a": "ifA", "b": "ifB", "seed": 1,
  "fwd": {props}, "rev": {props}}`` -> ``{"ok": true}``; props are any of
  ``delay_ms``, ``jitter_ms``, ``loss_pct``, ``up`` (defaults 0, 0, 0, true).
* ``{"op": "add_many", "links": [<add without op>, ...]}`` -> ``{"ok": true}``:
  every link or none (a bad one names itself and leaves nothing added), for
  bringing up hundreds of links in one round trip.
* ``{"op": "set", "link": "l0", "dir": "fwd"|"rev"|"both", <props>}`` ->
  ``{"ok": true}``; dir defaults to both, absent props keep their value, and
  a bad value changes nothing.
* ``{"op": "stats"}`` -> ``{"ok": true, "links": {"l0": {"fwd": counters,
  "rev": counters}}}``; counters: ``rx_frames``, ``rx_bytes``, ``fwd_frames``,
  ``fwd_bytes``, ``loss_frames``, ``loss_bytes``, ``down_frames``,
  ``down_bytes``, ``err_frames`` (send failures), ``sock_drops`` (kernel drops,
  receive buffer full) and ``queued`` (waiting for their release time).
* ``{"op": "quit"}`` -> reply, then exit 0. EOF on stdin or SIGTERM: exit 0.
  Closing a packet socket waits for an RCU grace period (~13 ms here), so the
  sockets are closed from many threads at once: 490 took 7 s one by one.
* Errors -> ``{"ok": false, "error": "one line"}``; the process keeps running.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import heapq
import itertools
import json
import math
import os
import random
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

Reply = Callable[[dict[str, Any]], None]

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_IGNORE_OUTGOING = 23  # Linux >= 4.20: we never see our own transmissions
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33  # not exported by the socket module
SO_TIMESTAMPNS = 35
PR_SET_TIMERSLACK = 29
RECV_SIZE = 65536  # larger than any frame, so an oversize one fails visibly on send
SOCK_BUF = 1 << 20  # the kernel doubles it: ~900 full frames, near netem's limit of 1000
BATCH = 64  # frames per socket per loop turn, so a busy link can't starve releases
SPIN_S = 50e-6  # select() wakes ~50-100 us late on this VM: wake early, poll until due
RT_PRIORITY = 10  # with CPU hogs, release lateness p99 was ~6 ms without it, ~0.2 ms with
DIRS = ("fwd", "rev")
LIMITS = {"delay_ms": math.inf, "jitter_ms": math.inf, "loss_pct": 100.0}
OPS = ("add", "add_many", "set", "stats", "quit")
FD_SETSIZE = 1024  # select() takes no higher fd: about 500 links per delay line
CLOSERS = 64  # threads closing sockets at exit (their grace-period waits overlap)


@dataclass(frozen=True, slots=True)
class DirProps:
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    up: bool = True


@dataclass(slots=True)
class Counters:
    rx_frames: int = 0
    rx_bytes: int = 0
    fwd_frames: int = 0
    fwd_bytes: int = 0
    loss_frames: int = 0
    loss_bytes: int = 0
    down_frames: int = 0
    down_bytes: int = 0
    err_frames: int = 0
    sock_drops: int = 0


def parse_props(obj: Any, base: DirProps = DirProps()) -> DirProps:
    """Return ``base`` updated with the props in ``obj``; raise ValueError if bad."""
    if not isinstance(obj, dict):
        raise ValueError(f"props must be an object, got {obj!r}")
    if extra := set(obj) - {f.name for f in fields(DirProps)}:
        raise ValueError(f"unknown prop(s): {', '.join(sorted(extra))}")
    upd: dict[str, Any] = {}
    for key, hi in LIMITS.items():
        if key in obj:
            v = obj[key]
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ValueError(f"{key} must be a number, got {v!r}")
            if not (math.isfinite(v) and 0 <= v <= hi):
                raise ValueError(f"{key} must be in [0, {hi}], got {v!r}")
            upd[key] = float(v)
    if "up" in obj:
        if not isinstance(obj["up"], bool):
            raise ValueError(f"up must be true or false, got {obj['up']!r}")
        upd["up"] = obj["up"]
    return replace(base, **upd)


def _check_add(cmd: Any) -> None:
    if not isinstance(cmd, dict) or not isinstance(cmd.get("link"), str):
        raise ValueError("link must be a string")
    for key in ("a", "b"):
        if not isinstance(cmd.get(key), str) or not cmd[key]:
            raise ValueError(f"{key} must be an interface name")
    if cmd["a"] == cmd["b"]:
        raise ValueError("a and b must differ")
    seed = cmd.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError("seed must be an integer")


def parse_command(line: str | bytes) -> dict[str, Any]:
    """Decode one control line into a dict with a known ``op``; raise ValueError."""
    try:
        cmd = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"bad JSON: {e}") from None
    if not isinstance(cmd, dict) or cmd.get("op") not in OPS:
        raise ValueError(f"command must be an object with op {'|'.join(OPS)}")
    if cmd["op"] in ("add", "set") and not isinstance(cmd.get("link"), str):
        raise ValueError("link must be a string")
    if cmd["op"] == "add":
        _check_add(cmd)
    if cmd["op"] == "add_many":
        links = cmd.get("links")
        if not isinstance(links, list) or not links:
            raise ValueError("links must be a non-empty list")
        for i, link in enumerate(links):
            try:
                _check_add(link)
            except ValueError as e:
                raise ValueError(f"links[{i}]: {e}") from None
    if cmd["op"] == "set" and cmd.get("dir", "both") not in ("fwd", "rev", "both"):
        raise ValueError("dir must be fwd|rev|both")
    return cmd


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
            queued: dict[int, int] = {}
            for _, _, d, _ in self.heap:
                queued[id(d)] = queued.get(id(d), 0) + 1
            out: dict[str, Any] = {}
            for name, link in self.links.items():
                out[name] = {}
                for k, d in link.items():
                    # struct tpacket_stats {packets, drops}; reading resets it.
                    raw = d.inp.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
                    d.c.sock_drops += int.from_bytes(raw[4:8], sys.byteorder)
                    out[name][k] = asdict(d.c) | {"queued": queued.get(id(d), 0)}
            return {"ok": True, "links": out}
        return {"ok": True}

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


def _reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m harness.emulation.shapers.delayline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--rt-priority",
        type=int,
        default=RT_PRIORITY,
        metavar="N",
        help="SCHED_FIFO priority, 0 for normal scheduling (default %(default)s)",
    )
    args = ap.parse_args(argv)
    if args.rt_priority > 0:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(args.rt_priority))
        except OSError as e:
            print(
                f"delayline: no realtime priority ({e.strerror}); timing will suffer on busy CPUs",
                file=sys.stderr,
            )
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:  # the default 50 us timer slack would add to every release
        ctypes.CDLL(None).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    dl = DelayLine()
    gc.freeze()  # else a full collection over start-up objects stalls the loop ~5 ms
    try:
        _reply({"ok": True, "ready": True})
        dl.run(_reply)
    except BrokenPipeError:  # the parent is gone; don't fail again flushing at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        dl.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
