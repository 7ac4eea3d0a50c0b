"""Inside a stage: the lean hop, KServe v2 ModelInfer messages over plain TCP between stages.

gRPC's Python stack costs about 0.7 ms per hop on this machine before a stage does
anything (`python -m harness.overhead --floors`: a bare gRPC relay), while Python can
move the same 64 KB over a TCP socket in 0.03 ms. So between harness stages a call is
the same protobuf messages, framed on a persistent connection: every stage listens on
its gRPC port + `OFFSET` (the same one address), and a stage calls the next one there.
Outside clients (sensors, tritonclient) keep the unary KServe v2 gRPC service, and
probes, control and hedged calls stay on gRPC.

Frames: a request is `!IBd` (body length, kind 1, timeout in s or -1) then a serialized
ModelInferRequest; an answer is `!IB` (body length, 0 or a gRPC status code) then a
ModelInferResponse, or for an error JSON {details, metadata}. Failures read as gRPC's
would: no connection or a reset is UNAVAILABLE, no answer in time DEADLINE_EXCEEDED,
so the techniques and detectors see the same signals on either transport.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from typing import Any

import grpc
from tritonclient.grpc import service_pb2 as pb

from harness.pipeline.routing import LEAN_PORT_OFFSET

OFFSET = LEAN_PORT_OFFSET  # lean port = gRPC port + OFFSET
REQ = struct.Struct("!IBd")
ANS = struct.Struct("!IB")
INFER = 1
CODES = {c.value[0]: c for c in grpc.StatusCode}


def recv_exact(sock: socket.socket, n: int) -> bytearray:
    """Exactly n bytes (ConnectionResetError if the peer closes first)."""
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:])
        if not k:
            raise ConnectionResetError("connection closed by peer")
        got += k
    return buf


class Abort(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


class Context:
    """What Stage.ModelInfer asks of a gRPC context, for a call that came in lean."""

    def __init__(self, timeout: float) -> None:
        self.deadline = None if timeout < 0 else time.monotonic() + timeout
        self.metadata: tuple = ()

    def time_remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def abort(self, code: grpc.StatusCode, details: str):
        raise Abort(code, details)

    def set_trailing_metadata(self, metadata) -> None:
        self.metadata = tuple(metadata)


class Server:
    """Accepts stage-to-stage connections; a thread per connection answers its calls in
    turn (a caller keeps one connection per call in flight)."""

    def __init__(self, stage: Any, host: str, port: int) -> None:
        self.stage = stage
        self.sock = socket.create_server((host, port))  # no SO_REUSEPORT: a clash fails
        self.thread = threading.Thread(target=self._accept, name="lean", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                while True:
                    n, kind, timeout = REQ.unpack(recv_exact(conn, REQ.size))
                    body = recv_exact(conn, n)
                    code, out = self._answer(kind, body, timeout)
                    conn.sendall(ANS.pack(len(out), code) + out)
            except OSError:
                return

    def _answer(self, kind: int, body: bytearray, timeout: float) -> tuple[int, bytes]:
        ctx = Context(timeout)
        try:
            if kind != INFER:
                raise Abort(grpc.StatusCode.UNIMPLEMENTED, f"lean call kind {kind}")
            resp = self.stage.ModelInfer(pb.ModelInferRequest.FromString(bytes(body)), ctx)
            return 0, resp.SerializeToString()
        except Abort as e:
            code, details = e.code, e.details
        except Exception as e:  # as gRPC answers an exception in a handler
            code, details = grpc.StatusCode.UNKNOWN, f"{type(e).__name__}: {e}"
        return code.value[0], json.dumps({"details": details,
                                          "metadata": list(ctx.metadata)}).encode()

    def stop(self) -> None:
        self.sock.close()


class Error(grpc.RpcError):
    """A lean call's failure, read like a gRPC one."""

    def __init__(self, code: grpc.StatusCode, details: str, metadata=()) -> None:
        super().__init__(details)
        self._code, self._details, self._md = code, details, tuple(map(tuple, metadata))

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple:
        return self._md


class Channel:
    """Persistent connections to one stage's lean port, one per call in flight."""

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self.addr = (host, int(port) + OFFSET)
        self.idle: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = False

    def ModelInfer(self, request, timeout: float | None = None):  # noqa: N802 (as the stub)
        body = request.SerializeToString()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self.lock:
                sock = self.idle.pop() if self.idle else None
            reused = sock is not None
            try:
                if sock is None:
                    sock = self._connect(deadline)
                code, out = self._exchange(sock, body, deadline)
            except TimeoutError:
                _close(sock)
                raise Error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
            except OSError as e:
                _close(sock)
                if reused and isinstance(e, (ConnectionResetError, BrokenPipeError)):
                    continue  # a kept connection the peer dropped since: the next kept one,
                    # or a fresh one once none is left (a restarted peer drops them all)
                raise Error(grpc.StatusCode.UNAVAILABLE, f"lean {self.addr}: {e}") from None
            self._release(sock)
            if code == 0:
                return pb.ModelInferResponse.FromString(out)
            err = json.loads(out)
            raise Error(CODES.get(code, grpc.StatusCode.UNKNOWN), err["details"],
                        err.get("metadata", ()))

    def _connect(self, deadline: float | None) -> socket.socket:
        sock = socket.create_connection(self.addr, timeout=_left(deadline))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    @staticmethod
    def _exchange(sock: socket.socket, body: bytes, deadline: float | None) -> tuple[int, bytes]:
        timeout = _left(deadline)
        sock.settimeout(timeout)
        sock.sendall(REQ.pack(len(body), INFER, -1.0 if timeout is None else timeout) + body)
        n, code = ANS.unpack(recv_exact(sock, ANS.size))
        sock.settimeout(_left(deadline))
        return code, bytes(recv_exact(sock, n))

    def _release(self, sock: socket.socket) -> None:
        with self.lock:
            if not self.closed:
                self.idle.append(sock)
                return
        sock.close()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            idle, self.idle = self.idle, []
        for s in idle:
            s.close()


def _left(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _close(sock: socket.socket | None) -> None:
    if sock is not None:
        sock.close()
