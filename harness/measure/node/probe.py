"""UDP probes run inside emulated hosts: echo server, RTT client, datagram blaster and sink.

Independent of the shaping code on purpose: fidelity checks and tests measure
links with it. Results are one JSON object on stdout.

  python -m harness.measure.node.probe echo --bind 10.0.0.2 --port 7007 --idle-s 5
  python -m harness.measure.node.probe rtt 10.0.0.2 --port 7007 --count 100 --interval-ms 10
  python -m harness.measure.node.probe sink --bind 10.0.0.2 --port 7008 --idle-s 2

Servers bind the address they are given (the node's emulated address), never all
interfaces: a probe must not answer on anything the harness did not create.
  python -m harness.measure.node.probe blast 10.0.0.2 --port 7008 --count 10000 --rate 2000
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import statistics
import struct
import sys
import time

HDR = struct.Struct("!IQ")  # sequence number, send time (CLOCK_REALTIME ns)
SO_TIMESTAMPNS = 35  # kernel receive timestamp (CLOCK_REALTIME), from <asm/socket.h>
TS = struct.Struct("qq")


def realtime_probe() -> None:
    """Run at real-time priority where allowed, so a busy CPU does not show up as RTT."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(5))
    except (OSError, AttributeError):
        pass


def percentile(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


def echo(bind: str, port: int, idle_s: float) -> dict:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((bind, port))
    sock.settimeout(idle_s)
    realtime_probe()
    print(json.dumps({"listening": port}), flush=True)
    n = 0
    try:
        while True:
            data, addr = sock.recvfrom(65535)
            sock.sendto(data, addr)
            n += 1
    except TimeoutError:
        pass
    return {"echoed": n}


def rtt(host: str, port: int, count: int, interval_ms: float, timeout_ms: float,
        size: int) -> dict:
    """Send on a fixed schedule (like ping), whatever the replies do; match replies by seq."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((host, port))
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)  # arrival time, not wake-up time
    realtime_probe()
    pad = b"\0" * max(0, size - HDR.size)
    sent_mono: dict[int, float] = {}  # CLOCK_MONOTONIC, shared by every namespace
    got: dict[int, float] = {}
    start = time.perf_counter()
    last_send = start + (count - 1) * interval_ms / 1000
    end = last_send + timeout_ms / 1000
    seq = 0
    while True:
        now = time.perf_counter()
        if seq < count and now >= start + seq * interval_ms / 1000:
            sent_mono[seq] = time.monotonic()
            try:
                sock.send(HDR.pack(seq, time.time_ns()) + pad)
            except ConnectionRefusedError:
                pass
            seq += 1
            continue
        if seq >= count and (now >= end or len(got) == count):
            break
        wake = start + seq * interval_ms / 1000 if seq < count else end
        r, _, _ = select.select([sock], [], [], max(0.0, wake - now))
        if not r:
            continue
        try:
            data, anc, _, _ = sock.recvmsg(65535, 64)
        except ConnectionRefusedError:
            continue
        arrived = time.time_ns()
        for level, kind, value in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = TS.unpack_from(value)
                arrived = sec * 10**9 + nsec
        n, sent_ns = HDR.unpack_from(data)
        rtt_ms = (arrived - sent_ns) / 1e6
        if n in sent_mono and n not in got and rtt_ms <= timeout_ms:
            got[n] = rtt_ms
    order = sorted(got)
    rtts = [got[n] for n in order]
    out = {"sent": count, "received": len(rtts), "rtts_ms": [round(r, 4) for r in rtts],
           "sent_at": [round(sent_mono[n], 6) for n in order]}
    if rtts:
        out.update(median_ms=statistics.median(rtts), p99_ms=percentile(rtts, 99),
                   min_ms=min(rtts), max_ms=max(rtts),
                   stdev_ms=statistics.pstdev(rtts))
    return out


def sink(bind: str, port: int, idle_s: float) -> dict:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((bind, port))
    print(json.dumps({"listening": port}), flush=True)
    seen: set[int] = set()
    sock.settimeout(idle_s * 4)  # generous wait for the first datagram
    try:
        while True:
            data = sock.recv(65535)
            seen.add(HDR.unpack_from(data)[0])
            sock.settimeout(idle_s)
    except TimeoutError:
        pass
    return {"received": len(seen)}


def blast(host: str, port: int, count: int, rate: float, size: int) -> dict:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((host, port))
    pad = b"\0" * max(0, size - HDR.size)
    start = time.perf_counter()
    for seq in range(count):
        sock.send(HDR.pack(seq, time.time_ns()) + pad)
        time.sleep(max(0.0, start + (seq + 1) / rate - time.perf_counter()))
    return {"sent": count}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.probe", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("echo")
    e.add_argument("--bind", required=True, help="the node's emulated address")
    e.add_argument("--port", type=int, default=7007)
    e.add_argument("--idle-s", type=float, default=5.0)
    r = sub.add_parser("rtt")
    r.add_argument("host")
    r.add_argument("--port", type=int, default=7007)
    r.add_argument("--count", type=int, default=100)
    r.add_argument("--interval-ms", type=float, default=10.0)
    r.add_argument("--timeout-ms", type=float, default=1000.0)
    r.add_argument("--size", type=int, default=64)
    s = sub.add_parser("sink")
    s.add_argument("--bind", required=True, help="the node's emulated address")
    s.add_argument("--port", type=int, default=7008)
    s.add_argument("--idle-s", type=float, default=2.0)
    b = sub.add_parser("blast")
    b.add_argument("host")
    b.add_argument("--port", type=int, default=7008)
    b.add_argument("--count", type=int, default=10000)
    b.add_argument("--rate", type=float, default=2000.0)
    b.add_argument("--size", type=int, default=64)
    a = ap.parse_args(argv)
    if a.cmd == "echo":
        out = echo(a.bind, a.port, a.idle_s)
    elif a.cmd == "rtt":
        out = rtt(a.host, a.port, a.count, a.interval_ms, a.timeout_ms, a.size)
    elif a.cmd == "sink":
        out = sink(a.bind, a.port, a.idle_s)
    else:
        out = blast(a.host, a.port, a.count, a.rate, a.size)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
