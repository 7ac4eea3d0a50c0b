"""The floor under a stage hop: what a Python relay costs with less in it than a stage.

`python -m harness.overhead --floors` measures, on loopback, the same 64 KB payload
sent to an echo process directly and through a relay process in front of it, call by
call interleaved; a relay's hop cost is (via relay) - (direct) at p50:

* `tcp`: the relay reads a length-prefixed message from a socket and writes it to the
  echo's socket, and the answer back: the least any Python process in the path costs
  (two wake-ups and the copies of 64 KB each way).
* `grpc unary`: a generic gRPC handler (bytes in and out, no protobuf parsing) making a
  unary call to the echo: what gRPC's Python stack costs per hop.
* `grpc stream`: the same relay forwarding over one persistent bidi stream, as
  persistent streams between stages would.

A KServe stage adds to `grpc unary` the parsing and building of ModelInfer messages and
its own bookkeeping; whatever it does, it cannot go below these floors in Python.
"""

from __future__ import annotations

import queue
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager

import numpy as np

from harness.pipeline.node.lean import recv_exact

SERVICE = "hxfloor.Floor"
OPTIONS = [("grpc.max_send_message_length", 1 << 24),
           ("grpc.max_receive_message_length", 1 << 24)]
HEADER = struct.Struct("!I")


# -- raw TCP --------------------------------------------------------------------------------


def _recv_msg(sock: socket.socket) -> bytes:
    (n,) = HEADER.unpack(recv_exact(sock, HEADER.size))
    return recv_exact(sock, n)


def _send_msg(sock: socket.socket, data: bytes) -> None:
    sock.sendall(HEADER.pack(len(data)) + data)


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def tcp_serve(port: int, nxt: int | None) -> None:
    """Echo (nxt None) or relay to the echo at port nxt; a thread per connection."""
    srv = socket.create_server(("127.0.0.1", port))
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=_tcp_conn, args=(conn, nxt), daemon=True).start()


def _tcp_conn(conn: socket.socket, nxt: int | None) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    down = _connect(nxt) if nxt else None
    try:
        while True:
            msg = _recv_msg(conn)
            if down is not None:
                _send_msg(down, msg)
                msg = _recv_msg(down)
            _send_msg(conn, msg)
    except ConnectionError:
        conn.close()
        if down is not None:
            down.close()


# -- gRPC -----------------------------------------------------------------------------------


def grpc_serve(port: int, nxt: int | None, stream: bool) -> None:
    """Echo (unary and stream), or a unary relay to the echo at port nxt (over unary calls,
    or over one persistent bidi stream)."""
    import grpc

    forward: Callable[[bytes], bytes] | None = None
    if nxt:
        ch = grpc.insecure_channel(f"127.0.0.1:{nxt}", options=OPTIONS)
        forward = _stream_forwarder(ch) if stream else ch.unary_unary(f"/{SERVICE}/Echo")

    def echo(req: bytes, _ctx) -> bytes:
        return forward(req) if forward else req

    def echo_stream(reqs: Iterator[bytes], _ctx) -> Iterator[bytes]:
        yield from reqs

    handler = grpc.method_handlers_generic_handler(SERVICE, {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "EchoStream": grpc.stream_stream_rpc_method_handler(echo_stream)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=(handler,),
                         options=OPTIONS)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


def _stream_forwarder(ch) -> Callable[[bytes], bytes]:
    """One bidi stream to the echo; calls are serialised over it (one client here)."""
    out: queue.Queue[bytes] = queue.Queue()
    answers = ch.stream_stream(f"/{SERVICE}/EchoStream")(iter(out.get, None))
    lock = threading.Lock()

    def forward(req: bytes) -> bytes:
        with lock:
            out.put(req)
            return next(answers)
    return forward


# -- measuring ------------------------------------------------------------------------------


def _start(*args: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-m", "harness.bench.hop_floor", *args],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    if p.stdout.readline().strip() != "ready":
        p.kill()
        raise RuntimeError(f"hop_floor {' '.join(args)} did not start")
    return p


@contextmanager
def _servers(kind: str, ports: list[int]) -> Iterator[None]:
    """An echo on ports[0] and a relay on ports[1] forwarding to it."""
    mode = {"tcp": ["tcp"], "grpc unary": ["grpc"], "grpc stream": ["grpc", "--stream"]}[kind]
    procs = []
    try:
        procs.append(_start(*mode, str(ports[0])))
        procs.append(_start(*mode, str(ports[1]), "--next", str(ports[0])))
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _caller(kind: str, port: int) -> tuple[Callable[[bytes], bytes], Callable[[], None]]:
    if kind == "tcp":
        s = _connect(port)
        return (lambda b: (_send_msg(s, b), _recv_msg(s))[1]), s.close
    import grpc

    ch = grpc.insecure_channel(f"127.0.0.1:{port}", options=OPTIONS)
    return ch.unary_unary(f"/{SERVICE}/Echo"), ch.close


def measure(kind: str, n: int, warmup: int, nbytes: int) -> dict[str, list[float]]:
    """Round trips (s) direct to the echo and through the relay, interleaved."""
    from harness.bench.stage_procs import free_port

    payload = np.random.default_rng(2).random(nbytes // 4, dtype=np.float32).tobytes()
    ports = [free_port(), free_port()]
    with _servers(kind, ports):
        calls = {"direct": _caller(kind, ports[0]), "relay": _caller(kind, ports[1])}
        try:
            for label, (call, _) in calls.items():
                if call(payload) != payload:
                    raise ValueError(f"{kind} {label}: the answer differs from the payload")
            out: dict[str, list[float]] = {label: [] for label in calls}
            for i in range(warmup + n):
                for label, (call, _) in calls.items():
                    t0 = time.perf_counter()
                    call(payload)
                    if i >= warmup:
                        out[label].append(time.perf_counter() - t0)
            return out
        finally:
            for _, close in calls.values():
                close()


def floors(n: int, warmup: int, nbytes: int) -> dict[str, dict[str, float]]:
    """Per kind: p50 direct, p50 through the relay, and the hop (their difference), ms."""
    res = {}
    for kind in ("tcp", "grpc unary", "grpc stream"):
        m = measure(kind, n, warmup, nbytes)
        d, r = (float(np.percentile(m[k], 50)) * 1e3 for k in ("direct", "relay"))
        res[kind] = {"direct_p50_ms": d, "relay_p50_ms": r, "hop_p50_ms": r - d}
    return res


def print_floors(fl: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="the floor under a hop: a bare Python relay, same payload (p50 ms)")
    for col in ("relay over", "direct", "via relay", "hop"):
        t.add_column(col, justify="left" if col == "relay over" else "right")
    for kind, r in fl.items():
        t.add_row(kind, f"{r['direct_p50_ms']:.3f}", f"{r['relay_p50_ms']:.3f}",
                  f"{r['hop_p50_ms']:.3f}")
    Console().print(t)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m harness.bench.hop_floor",
                                 description="an echo or relay server of --floors")
    ap.add_argument("kind", choices=["tcp", "grpc"])
    ap.add_argument("port", type=int)
    ap.add_argument("--next", type=int, help="relay to the echo on this port")
    ap.add_argument("--stream", action="store_true", help="grpc relay over one stream")
    a = ap.parse_args(argv)
    if a.kind == "tcp":
        tcp_serve(a.port, a.next)
    else:
        grpc_serve(a.port, a.next, a.stream)
    return 0


if __name__ == "__main__":
    sys.exit(main())
