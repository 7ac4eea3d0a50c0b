"""A pipeline stage: one ONNX partition behind the KServe v2 / Open Inference Protocol.

`python -m harness.stage --model PATH --port N [--name NAME]` serves the
partition over gRPC with the stubs `tritonclient[grpc]` ships (ServerLive,
ServerReady, ServerMetadata, ModelReady, ModelMetadata, ModelInfer), so any
KServe v2 client can call it and a Triton server could stand in for it.

A stage with a route forwards: it runs its partition, then sends the next
partition the tensors it needs (its own outputs, or inputs it passes through,
e.g. a skip connection), waits for the answer within the caller's deadline,
and returns it with its own hop prepended to the `path` parameter. Routes are
set at start (`--route JSON`) or at run time through the small JSON service
`harness.StageControl/SetRoute` on the same port.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from concurrent import futures
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from harness.config import ConfigError
from harness.fusion import Fuser
from harness.routing import EventSink, HealthChecker, Route

NP_TO_V2 = {np.dtype("float32"): "FP32", np.dtype("float64"): "FP64",
            np.dtype("int64"): "INT64", np.dtype("int32"): "INT32",
            np.dtype("uint8"): "UINT8", np.dtype("bool"): "BOOL", np.dtype("float16"): "FP16"}
V2_TO_NP = {v: k for k, v in NP_TO_V2.items()}
ORT_TO_NP = {"tensor(float)": np.float32, "tensor(double)": np.float64,
             "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
             "tensor(bool)": np.bool_, "tensor(float16)": np.float16}
CONTROL_SERVICE = "harness.StageControl"
GRPC_OPTIONS = [("grpc.max_send_message_length", 64 << 20),
                ("grpc.max_receive_message_length", 64 << 20)]
# Reconnect within 200 ms after a peer comes back (gRPC's default backoff grows to two
# minutes, which would be measured as the technique's recovery time). The minimum
# doubles as the connect timeout, so it stays well above any emulated RTT.
CHANNEL_OPTIONS = GRPC_OPTIONS + [("grpc.initial_reconnect_backoff_ms", 50),
                                  ("grpc.min_reconnect_backoff_ms", 1000),
                                  ("grpc.max_reconnect_backoff_ms", 200)]


# -- tensors on the wire -------------------------------------------------------------------


def decode_inputs(req: pb.ModelInferRequest) -> dict[str, np.ndarray]:
    """Tensors of a request, from raw_input_contents (or typed contents)."""
    out = {}
    for i, t in enumerate(req.inputs):
        if t.datatype not in V2_TO_NP:
            raise ValueError(f"input {t.name}: unsupported datatype {t.datatype}")
        dt = V2_TO_NP[t.datatype]
        if i < len(req.raw_input_contents):
            arr = np.frombuffer(req.raw_input_contents[i], dtype=dt)
        else:
            c = t.contents
            vals = {"FP32": c.fp32_contents, "FP64": c.fp64_contents,
                    "INT64": c.int64_contents, "INT32": c.int_contents,
                    "UINT8": c.uint_contents, "BOOL": c.bool_contents}.get(t.datatype, [])
            arr = np.asarray(list(vals), dtype=dt)
        out[t.name] = arr.reshape(tuple(t.shape))
    return out


def encode(msg: pb.ModelInferRequest | pb.ModelInferResponse, tensors: dict[str, np.ndarray],
           field_name: str) -> None:
    """Append tensors as raw contents to a request (inputs) or response (outputs)."""
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        t = getattr(msg, field_name).add()
        t.name = name
        t.datatype = NP_TO_V2[arr.dtype]
        t.shape.extend(arr.shape)
        raw = msg.raw_input_contents if field_name == "inputs" else msg.raw_output_contents
        raw.append(arr.tobytes())


def infer_request(model: str, tensors: dict[str, np.ndarray], request_id: str = "",
                  params: dict[str, Any] | None = None) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name=model, id=request_id)
    for k, v in (params or {}).items():
        set_param(req.parameters[k], v)
    encode(req, tensors, "inputs")
    return req


def set_param(p: pb.InferParameter, v: Any) -> None:
    if isinstance(v, bool):
        p.bool_param = v
    elif isinstance(v, int):
        p.int64_param = v
    elif isinstance(v, float):
        p.double_param = v
    else:
        p.string_param = str(v)


def decode_outputs(resp: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    out = {}
    for i, t in enumerate(resp.outputs):
        arr = np.frombuffer(resp.raw_output_contents[i], dtype=V2_TO_NP[t.datatype])
        out[t.name] = arr.reshape(tuple(t.shape))
    return out


# -- the model a stage serves -----------------------------------------------------------


class Runner:
    """ONNX Runtime session (or, for the null stage, identity) behind one interface."""

    def __init__(self, model_path: str | None, providers: list[str] | None, threads: int,
                 null_io: list[str] | None = None) -> None:
        self.session = None
        if model_path is None:
            names = null_io or ["x"]
            self.inputs = {n: ("FP32", [-1]) for n in names}
            self.outputs = dict(self.inputs)
            self.providers: list[str] = []
            return
        from harness.partition import load_session, providers_used

        self.session = load_session(model_path, providers, threads)
        self.providers = providers_used(self.session)
        self.inputs = {i.name: (NP_TO_V2[np.dtype(ORT_TO_NP[i.type])], _dims(i.shape))
                       for i in self.session.get_inputs()}
        self.outputs = {o.name: (NP_TO_V2[np.dtype(ORT_TO_NP[o.type])], _dims(o.shape))
                        for o in self.session.get_outputs()}

    def run(self, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self.inputs if n not in tensors]
        if missing:
            raise KeyError(f"missing input tensor(s) {missing}")
        if self.session is None:
            return {n: tensors[n] for n in self.inputs}
        feed = {n: tensors[n] for n in self.inputs}
        return dict(zip(self.outputs, self.session.run(list(self.outputs), feed), strict=True))


def _dims(shape: list) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in shape]


# -- the stage -------------------------------------------------------------------------------


class TargetDown(grpc.RpcError):
    """An attempt abandoned because the health checker marked its target down."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return f"{self.target} marked down by health check"


class Stage(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, runner: Runner, name: str, node: str, route: Route | None,
                 events: EventSink | None = None) -> None:
        self.runner, self.name, self.node = runner, name, node
        self.channels: dict[str, tuple[grpc.Channel, pb_grpc.GRPCInferenceServiceStub]] = {}
        self.lock = threading.Lock()
        self.stats = {"requests": 0, "errors": 0, "forwarded": 0, "failovers": 0,
                      "degraded": 0}
        self.events = events or EventSink(None, self.hop)
        self.fuser: Fuser | None = None
        self.health = HealthChecker(self.probe, self.events)
        self.route = route
        self.health.start()

    @property
    def route(self) -> Route | None:
        return self._route

    @route.setter
    def route(self, route: Route | None) -> None:
        self._route = route
        self.health.set_route(route)

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

    # KServe v2 health and metadata
    def ServerLive(self, request, context):  # noqa: N802 (names fixed by the protocol)
        return pb.ServerLiveResponse(live=True)

    def ServerReady(self, request, context):  # noqa: N802
        return pb.ServerReadyResponse(ready=True)

    def ServerMetadata(self, request, context):  # noqa: N802
        return pb.ServerMetadataResponse(name="harness-stage", version="1")

    def ModelReady(self, request, context):  # noqa: N802
        return pb.ModelReadyResponse(ready=request.name == self.name)

    def ModelMetadata(self, request, context):  # noqa: N802
        if request.name != self.name:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {request.name!r}")
        resp = pb.ModelMetadataResponse(name=self.name, versions=["1"], platform="onnxruntime_onnx")
        for src, dst in ((self.runner.inputs, resp.inputs), (self.runner.outputs, resp.outputs)):
            for n, (dt, shape) in src.items():
                dst.add(name=n, datatype=dt, shape=shape)
        return resp

    def ModelInfer(self, request, context):  # noqa: N802
        if request.model_name != self.name:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {request.model_name!r}")
        with self.lock:
            self.stats["requests"] += 1
        fused = 0
        try:
            tensors = decode_inputs(request)
            if self.fuser is not None:
                outputs, fused = self.fuser.join(request.id, tensors)
            else:
                outputs = self.runner.run(tensors)
        except Exception as e:
            self.stats["errors"] += 1
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{self.hop}: {e}")
        route = self.route
        if route is None:
            resp = pb.ModelInferResponse(model_name=self.name, model_version="1",
                                         id=request.id)
            encode(resp, outputs, "outputs")
            resp.parameters["path"].string_param = self.hop
            if self.fuser is not None:
                resp.parameters["fused"].int64_param = fused
            return resp
        return self.forward(request, outputs, route, context)

    @property
    def hop(self) -> str:
        return f"{self.node}:{self.name}"

    def stub(self, target: str) -> pb_grpc.GRPCInferenceServiceStub:
        with self.lock:
            if target not in self.channels:
                ch = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
                self.channels[target] = (ch, pb_grpc.GRPCInferenceServiceStub(ch))
            return self.channels[target][1]

    def next_request(self, request, outputs: dict[str, np.ndarray],
                     route: Route) -> pb.ModelInferRequest:
        """The next model's inputs: fresh outputs encoded, passed-through tensors as the raw
        bytes they came in (no decode/encode of a skip tensor), missing ones as zeros."""
        incoming = {t.name: i for i, t in enumerate(request.inputs)}
        nxt = pb.ModelInferRequest(model_name=route.model, id=request.id)
        batch = None
        for name in route.inputs:
            i = incoming.get(name)
            if i is not None and i < len(request.raw_input_contents):
                nxt.inputs.add().CopyFrom(request.inputs[i])
                nxt.raw_input_contents.append(request.raw_input_contents[i])
                batch = batch or request.inputs[i].shape[0]
            elif name in outputs:
                encode(nxt, {name: outputs[name]}, "inputs")
                batch = batch or outputs[name].shape[0]
            elif name in route.zeros:
                encode(nxt, {name: np.zeros([batch or 1, *route.zeros[name]], np.float32)},
                       "inputs")
            else:
                raise KeyError(f"next model {route.model} needs {name!r}")
        for k, v in request.parameters.items():
            nxt.parameters[k].CopyFrom(v)
        return nxt

    def call(self, msg, route: Route, deadline: float | None):
        """Try the route's targets by its policy; (response, None) or (None, last error)."""
        targets = self.health.order(route.targets) if route.health else list(route.targets)
        if route.health and route.fallback is not None:
            # a fallback serves while targets are down: do not wait on them
            targets = [t for t in targets if t not in self.health.down]
        attempt = route.attempt_timeout_ms / 1000 if route.attempt_timeout_ms else None

        def timeout() -> float | None:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if attempt is None:
                return left
            return attempt if left is None else min(attempt, left)

        if route.policy == "hedge":
            return self._hedge(msg, targets, route.hedge_ms / 1000, timeout)
        last = None
        for n, target in enumerate(targets):
            t = timeout()
            if t is not None and t <= 0:
                break
            try:
                resp = self._attempt(target, msg, t, watch=route.health is not None)
                if n:
                    with self.lock:
                        self.stats["failovers"] += 1
                return resp, None
            except grpc.RpcError as e:
                last = e
        return None, last

    def _attempt(self, target: str, msg, timeout: float | None, watch: bool):
        """One call; with health checks on, abandoned as soon as the target is marked down
        (in-flight requests move to the survivor instead of waiting out their timeout)."""
        if not watch:
            return self.stub(target).ModelInfer(msg, timeout=timeout)
        fut = self.stub(target).ModelInfer.future(msg, timeout=timeout)
        done = threading.Event()
        fut.add_done_callback(lambda _f: done.set())
        while not done.wait(0.01):
            if target in self.health.down:
                fut.cancel()
                raise TargetDown(target)
        return fut.result()

    def _hedge(self, msg, targets: list[str], hedge_s: float, timeout):
        """Ask the first target, then the next ones (at once or after hedge_s); first wins."""
        lock = threading.Lock()
        done = threading.Event()
        state: dict[str, Any] = {"resp": None, "err": None, "failed": 0, "launched": 0}
        futs = []

        def finished(f) -> None:
            with lock:
                if f.cancelled():
                    return
                if f.exception() is None and state["resp"] is None:
                    state["resp"] = f.result()
                    done.set()
                elif f.exception() is not None:
                    state["err"] = f.exception()
                    state["failed"] += 1
                    if state["failed"] == len(targets):
                        done.set()

        for n, target in enumerate(targets):
            t = timeout()
            if n and (done.wait(hedge_s) or state["resp"] is not None):
                break
            f = self.stub(target).ModelInfer.future(msg, timeout=t)
            futs.append(f)
            f.add_done_callback(finished)
        t = timeout()
        done.wait(t)
        for f in futs:
            f.cancel()
        return state["resp"], state["err"]

    def forward(self, request, outputs: dict[str, np.ndarray], route: Route, context):
        remaining = context.time_remaining()
        if remaining is not None and remaining > 1e8:
            # the caller set no deadline: gRPC reports ~9.2e18 s, which as a timeout
            # overflows the deadline and fails at once with DEADLINE_EXCEEDED
            remaining = None
        elif remaining is not None:
            # give up a little before the caller does, so its error names this hop
            remaining = max(0.0, remaining - min(0.05, 0.1 * remaining))
        deadline = None if remaining is None else time.monotonic() + remaining
        try:
            resp, err = self.call(self.next_request(request, outputs, route), route, deadline)
            degraded = False
            if resp is None and route.fallback is not None:
                fb = route.fallback
                resp, err2 = self.call(self.next_request(request, outputs, fb), fb, deadline)
                err = err2 or err
                degraded = resp is not None
        except KeyError as e:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{self.hop}: {e}")
        if resp is None:
            with self.lock:
                self.stats["errors"] += 1
            if err is None:
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                              f"{self.hop} -> {route.model}: no time left")
            context.abort(err.code(), f"{self.hop} -> {route.model}: {err.details()}")
        with self.lock:
            self.stats["forwarded"] += 1
            self.stats["degraded"] += int(degraded or route.degraded)
        resp.parameters["path"].string_param = (
            f"{self.hop}>{resp.parameters['path'].string_param}")
        if degraded or route.degraded:
            resp.parameters["degraded"].bool_param = True
        return resp

    # harness.StageControl (JSON over the same port)
    def control(self, method: str, body: dict) -> dict:
        if method == "SetRoute":
            try:
                self.route = Route.from_json(body.get("route") if isinstance(body, dict)
                                             else body)
            except ValueError as e:
                return {"ok": False, "error": str(e)}
            return {"ok": True}
        if method == "Stats":
            return {"ok": True, "name": self.name, "node": self.node, **self.stats,
                    "providers": self.runner.providers}
        return {"ok": False, "error": f"unknown method {method}"}


def _control_handler(stage: Stage) -> grpc.GenericRpcHandler:
    def handler(method: str):
        return grpc.unary_unary_rpc_method_handler(
            lambda body, _ctx: stage.control(method, body),
            request_deserializer=lambda b: json.loads(b or b"{}"),
            response_serializer=lambda d: json.dumps(d).encode())

    return grpc.method_handlers_generic_handler(
        CONTROL_SERVICE, {m: handler(m) for m in ("SetRoute", "Stats")})


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


def serve(stage: Stage, port: int, host: str = "0.0.0.0", workers: int = 64) -> grpc.Server:
    # so_reuseport off: gRPC sets SO_REUSEPORT by default, so a second stage on a port in
    # use would bind silently and share its traffic instead of failing.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                         options=[*GRPC_OPTIONS, ("grpc.so_reuseport", 0)])
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(stage, server)
    server.add_generic_rpc_handlers((_control_handler(stage),))
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:  # recent grpcio raises instead of returning 0
        bound = 0
    if bound == 0:
        raise ConfigError(f"--port={port}: cannot listen on {host}:{port}")
    server.start()
    return server


def first_inference(runner: Runner) -> None:
    """One inference on zeros before serving: the cold-start cost, paid before ready."""
    if runner.session is None:
        return
    feed = {}
    for name, (dt, shape) in runner.inputs.items():
        feed[name] = np.zeros([d if d > 0 else 1 for d in shape], dtype=V2_TO_NP[dt])
    runner.run(feed)


def main(argv: list[str] | None = None) -> int:
    t_start = time.monotonic()
    ap = argparse.ArgumentParser(prog="python -m harness.stage", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="ONNX partition to serve (omit with --null)")
    ap.add_argument("--null", metavar="TENSORS", default=None,
                    help="null stage: no model, returns these comma-separated inputs")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--name", help="model name served (default: the file's stem)")
    ap.add_argument("--node", default=os.uname().nodename, help="node name for `path`")
    ap.add_argument("--route", default="", help="JSON route to the next stage")
    ap.add_argument("--providers", default="CPUExecutionProvider",
                    help="comma-separated ONNX Runtime execution providers")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    ap.add_argument("--ready-file", help="write {providers, pid, timings} here once serving")
    ap.add_argument("--events", help="append technique events (health transitions) here")
    ap.add_argument("--fuse", type=int, default=0, metavar="N",
                    help="fusion stage (with --null TENSOR): join N observations per request id")
    ap.add_argument("--fuse-wait-ms", type=float, default=20.0,
                    help="fusion: decide this long after the first observation at the latest")
    a = ap.parse_args(argv)
    try:
        if (a.model is None) == (a.null is None):
            raise ConfigError("--model: give exactly one of --model PATH or --null TENSORS")
        if not 0 < a.port < 65536:
            raise ConfigError(f"--port={a.port}: must be 1-65535")
        t_load = time.monotonic()
        runner = Runner(a.model, a.providers.split(","), a.threads,
                        a.null.split(",") if a.null else None)
        t_loaded = time.monotonic()
        first_inference(runner)
        t_first = time.monotonic()
        load_s = t_loaded - t_load
        name = a.name or (os.path.splitext(os.path.basename(a.model))[0] if a.model
                          else "null")
        try:
            route = Route.from_json(json.loads(a.route)) if a.route else None
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"--route={a.route!r}: {e}") from None
        if a.fuse and not a.null:
            raise ConfigError(f"--fuse={a.fuse}: a fusion stage is a --null stage")
        stage = Stage(runner, name, a.node, route, EventSink(a.events, f"{a.node}:{name}"))
        if a.fuse:
            stage.fuser = Fuser(a.fuse, a.fuse_wait_ms, a.null.split(",")[0])
        server = serve(stage, a.port, a.host)
    except ConfigError as e:
        print(f"stage error: {e}", file=sys.stderr)
        return 2
    info = {"pid": os.getpid(), "name": name, "port": a.port,
            "providers": runner.providers, "load_s": load_s,
            # monotonic instants (shared by every namespace) for recovery breakdowns
            "t_start": t_start, "t_load": t_load, "t_loaded": t_loaded,
            "t_first_inference": t_first, "t_ready": time.monotonic()}
    if a.ready_file:
        from harness.results import write_json

        write_json(a.ready_file, info)
    print(json.dumps({"serving": info}), flush=True)
    done = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: done.set())
    done.wait()
    server.stop(grace=0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
