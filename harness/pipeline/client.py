"""Calling stages: channel options, a fresh-connection liveness probe, the control RPC."""

from __future__ import annotations

import json

import grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

CONTROL_SERVICE = "harness.StageControl"
GRPC_OPTIONS = [("grpc.max_send_message_length", 64 << 20),
                ("grpc.max_receive_message_length", 64 << 20)]
# Reconnect within 200 ms after a peer comes back (gRPC's default backoff grows to two
# minutes, which would be measured as the technique's recovery time). The minimum
# doubles as the connect timeout, so it stays well above any emulated RTT.
CHANNEL_OPTIONS = GRPC_OPTIONS + [("grpc.initial_reconnect_backoff_ms", 50),
                                  ("grpc.min_reconnect_backoff_ms", 1000),
                                  ("grpc.max_reconnect_backoff_ms", 200)]



def live_fresh(target: str, timeout_s: float) -> bool:
    """KServe ServerLive over a new connection: a cached channel to a peer that was down
    may sit in a SYN retry or a reconnect backoff for seconds after it is back."""
    ch = grpc.insecure_channel(target, options=GRPC_OPTIONS)
    try:
        return pb_grpc.GRPCInferenceServiceStub(ch).ServerLive(
            pb.ServerLiveRequest(), timeout=timeout_s).live
    except grpc.RpcError:
        return False
    finally:
        ch.close()


def control_call(target: str, method: str, body: dict | None = None,
                 timeout: float = 5.0) -> dict:
    """Call `harness.StageControl/<method>` on a stage."""
    with grpc.insecure_channel(target) as ch:
        call = ch.unary_unary(f"/{CONTROL_SERVICE}/{method}",
                              request_serializer=lambda d: json.dumps(d).encode(),
                              response_deserializer=json.loads)
        return call(body or {}, timeout=timeout)

