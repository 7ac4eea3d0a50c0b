"""Inside a stage: its calls to the next stage's targets, one attempt at a time.

`Calls` owns the channels to the route's targets (gRPC, and the lean hop for blocking
calls) and makes one attempt on a target: unwatched, or watched by the health checker
-- with the probe detector abandoned the moment its target is marked down, with the
passive detector the call itself is the health check (see health.py). Which targets
are tried, in which order, at once or in turn, is the route's forwarding policy's
(forwarding.py, and the techniques' own).
"""

from __future__ import annotations

import threading
import time

import grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from harness.pipeline.client import CHANNEL_OPTIONS, live_fresh
from harness.pipeline.node import lean
from harness.pipeline.node.health import HealthChecker

DOWNSTREAM = "hx-downstream-error"  # trailing metadata: the error is a later hop's


def _refused(err: grpc.RpcError) -> bool:
    """The target itself refused or dropped the call (no route to it, connection reset),
    not a later hop (a stage says so in its trailing metadata). A DEADLINE_EXCEEDED says
    nothing of the target: the caller's own time may be what ran out."""
    try:
        return err.code() == grpc.StatusCode.UNAVAILABLE and not any(
            k == DOWNSTREAM for k, _ in (err.trailing_metadata() or ()))
    except AttributeError:  # an error of our own, e.g. TargetDown
        return False


class TargetDown(grpc.RpcError):
    """An attempt abandoned because the health checker marked its target down."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return f"{self.target} marked down by health check"


class Calls:
    def __init__(self, health: HealthChecker, stats: dict, lock: threading.Lock) -> None:
        self.health, self.stats, self.lock = health, stats, lock
        self.channels: dict[str, tuple[grpc.Channel, pb_grpc.GRPCInferenceServiceStub]] = {}
        # lean: blocking calls to the next stage go over lean.Channel (probes, control and
        # hedged or watched calls stay on gRPC)
        self.lean = False
        self.lean_channels: dict[str, lean.Channel] = {}

    def probe(self, target: str, timeout_s: float) -> bool:
        """ServerLive within the timeout. A target that is down is probed over a fresh
        connection (the cached channel may sit in a SYN retry or a reconnect backoff for
        seconds after the peer is back); once it answers, data calls get a fresh channel."""
        if target not in self.health.down and target in self.health.seen_up:
            try:
                return self.stub(target).ServerLive(pb.ServerLiveRequest(),
                                                    timeout=timeout_s).live
            except grpc.RpcError:
                return False
        live = live_fresh(target, timeout_s)
        if live and target in self.health.down:
            with self.lock:
                old = self.channels.pop(target, None)
            if old is not None:
                old[0].close()  # calls still waiting on the dead connection fail now
        return live

    def stub(self, target: str) -> pb_grpc.GRPCInferenceServiceStub:
        with self.lock:
            if target not in self.channels:
                ch = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
                self.channels[target] = (ch, pb_grpc.GRPCInferenceServiceStub(ch))
            return self.channels[target][1]

    def infer(self, target: str):
        """ModelInfer of a blocking call to `target`, on the lean hop if this stage uses it."""
        if not self.lean:
            return self.stub(target).ModelInfer
        with self.lock:
            if target not in self.lean_channels:
                self.lean_channels[target] = lean.Channel(target)
            return self.lean_channels[target].ModelInfer

    def attempt(self, target: str, msg, timeout: float | None, watch: bool):
        """One call; with the probe detector, abandoned as soon as the target is marked
        down (in-flight requests move to the survivor instead of waiting out their
        timeout). With the passive detector the call itself is the health check."""
        if not watch:
            return self.infer(target)(msg, timeout=timeout)
        if self.health.passive:
            return self._passive(target, msg, timeout)
        fut = self.stub(target).ModelInfer.future(msg, timeout=timeout)
        done = threading.Event()
        fut.add_done_callback(lambda _f: done.set())
        while not done.wait(0.01):
            if target in self.health.down:
                if not fut.cancel() and fut.done():
                    break  # the answer came in the meantime: take it
                raise TargetDown(target)
        return fut.result()

    def _passive(self, target: str, msg, timeout: float | None):
        """A plain blocking call whose deadline is the target's silence limit: nothing
        runs beside it while all is well (a watched future costs a thread wake-up per
        call). A refusal marks the target down; a deadline that was the limit's, not the
        caller's, makes it suspect and moves the call on."""
        health = self.health
        limit = health.suspect_after(target)
        own = limit is not None and (timeout is None or limit < timeout)
        t0 = time.monotonic()
        try:
            resp = self.infer(target)(msg, timeout=limit if own else timeout)
        except grpc.RpcError as e:
            waited_ms = round((time.monotonic() - t0) * 1000, 2)
            if _refused(e):
                health.refused(target, code=e.code().name, waited_ms=waited_ms)
            elif own and e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                health.silent(target, waited_ms=waited_ms)
                raise TargetDown(target) from None
            raise
        health.answered(target, time.monotonic() - t0)
        return resp
