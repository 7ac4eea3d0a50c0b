"""A pipeline stage: one ONNX partition behind the KServe v2 / Open Inference Protocol.

Serves one partition over gRPC with the stubs `tritonclient[grpc]` ships (ServerLive,
ServerReady, ServerMetadata, ModelReady, ModelMetadata, ModelInfer), so any
KServe v2 client can call it and a Triton server could stand in for it.

A stage with a route forwards: it runs its partition, then sends the next
partition the tensors it needs (its own outputs, or inputs it passes through,
e.g. a skip connection), waits for the answer within the caller's deadline,
and returns it with its own hop prepended to the `path` parameter. Routes are
set at start (`--route JSON`) or at run time through the small JSON service
`harness.StageControl/SetRoute` on the same port; `LoadModel` swaps in another
partition (a controller re-partitioning the model after a node failed). How a
request goes on along the route -- which targets, in which order, what instead when
they fail -- is the route's forwarding policy (forwarding.py; a technique's own in
`harness/techniques/<name>/node/`), built for each route the stage is given.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from harness.pipeline.codec import decode_inputs, encode
from harness.pipeline.node import forwarding, policies
from harness.pipeline.node.calls import DOWNSTREAM, Calls
from harness.pipeline.node.health import EventSink, HealthChecker
from harness.pipeline.node.join import Missing
from harness.pipeline.node.runner import Runner
from harness.pipeline.routing import Route


class Stage(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, runner: Runner, name: str, node: str, route: Route | None,
                 events: EventSink | None = None) -> None:
        self.runner, self.name, self.node = runner, name, node
        self.threads = 1  # ONNX Runtime intra-op threads, for a model loaded later
        self.lock = threading.Lock()
        self.stats = {"requests": 0, "errors": 0, "forwarded": 0, "failovers": 0,
                      "degraded": 0, "live_calls": 0}
        self.events = events or EventSink(None, self.hop)
        # joins requests sharing an id (a technique's node part, e.g. fusion): .join(id,
        # tensors) -> (outputs, how many joined)
        self.joiner: Any = None
        self.health = HealthChecker(None, self.events)
        self.calls = Calls(self.health, self.stats, self.lock)
        self.health.probe = self.calls.probe
        self.route = route
        self.health.start()

    @property
    def route(self) -> Route | None:
        return self._forwarding[0]

    @route.setter
    def route(self, route: Route | None) -> None:
        # the route with its own policy, in one reference: a request in flight keeps the
        # pair it started with (what a policy learned was about its route only)
        policy = None if route is None else policies.find(route.policy)(self, route)
        self._forwarding: tuple[Route | None, forwarding.Policy | None] = (route, policy)
        self.health.set_route(route)

    # KServe v2 health and metadata
    def ServerLive(self, request, context):  # noqa: N802 (names fixed by the protocol)
        with self.lock:
            self.stats["live_calls"] += 1  # what watching this stage costs it
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
        fused, joined = 0, None
        try:
            tensors = decode_inputs(request)
            if self.joiner is not None:
                # (outputs, how many joined[, which: a join stage's inputs "a+b"])
                outputs, fused, *which = self.joiner.join(request.id, tensors)
                joined = which[0] if which else None
            else:
                outputs = self.runner.run(tensors)
        except Missing as e:  # a branch's part never came: this stage itself is fine
            with self.lock:
                self.stats["errors"] += 1
            context.set_trailing_metadata(((DOWNSTREAM, self.hop),))
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.hop}: {e}")
        except Exception as e:
            with self.lock:
                self.stats["errors"] += 1
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{self.hop}: {e}")
        route, policy = self._forwarding
        if route is None or policy is None:
            resp = pb.ModelInferResponse(model_name=self.name, model_version="1",
                                         id=request.id)
            encode(resp, outputs, "outputs")
            resp.parameters["path"].string_param = self.hop
            if self.joiner is not None:
                resp.parameters["fused"].int64_param = fused
            if joined is not None:
                resp.parameters["joined"].string_param = joined
            return resp
        return self.forward(request, outputs, policy, context)

    @property
    def hop(self) -> str:
        return f"{self.node}:{self.name}"

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

    def forward(self, request, outputs: dict[str, np.ndarray], policy: forwarding.Policy,
                context):
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
            sent = policy.send(request, outputs, deadline)
        except KeyError as e:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{self.hop}: {e}")
        resp, err, route = sent.resp, sent.err, sent.route
        degraded = sent.degraded or route.degraded
        if resp is None:
            with self.lock:
                self.stats["errors"] += 1
            # this stage is alive: callers must not blame it for a hop further down
            context.set_trailing_metadata(((DOWNSTREAM, self.hop),))
            if err is None:
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                              f"{self.hop} -> {route.model}: no time left")
            context.abort(err.code(), f"{self.hop} -> {route.model}: {err.details()}")
        with self.lock:
            self.stats["forwarded"] += 1
            self.stats["degraded"] += int(degraded)
        resp.parameters["path"].string_param = (
            f"{self.hop}>{resp.parameters['path'].string_param}")
        if degraded:
            resp.parameters["degraded"].bool_param = True
        return resp

    def load_model(self, path: str | None) -> dict:
        """Serve another partition from now on (loaded and run once before the swap, so
        no request waits on a cold session)."""
        from harness.pipeline.node.runner import first_inference

        if not isinstance(path, str) or self.runner.session is None or self.joiner is not None:
            return {"ok": False, "error": f"LoadModel: path={path!r} (a model stage that "
                                          "joins nothing only)"}
        t0 = time.monotonic()
        try:
            runner = Runner(path, self.runner.providers or None, self.threads)
            first_inference(runner)
        except Exception as e:  # a bad file must not take the stage down
            return {"ok": False, "error": f"LoadModel: {str(e).splitlines()[0][:200]}"}
        self.runner = runner
        load_ms = round((time.monotonic() - t0) * 1000, 3)
        self.events("stage.load", self.hop, path=path, load_ms=load_ms)
        return {"ok": True, "load_ms": load_ms}

    # harness.StageControl (JSON over the same port)
    def control(self, method: str, body: dict) -> dict:
        if method == "SetRoute":
            try:
                self.route = Route.from_json(body.get("route") if isinstance(body, dict)
                                             else body)
            except ValueError as e:
                return {"ok": False, "error": str(e)}
            return {"ok": True}
        if method == "LoadModel":
            return self.load_model(body.get("path") if isinstance(body, dict) else None)
        if method == "Stats":
            return {"ok": True, "name": self.name, "node": self.node, **self.stats,
                    "providers": self.runner.providers,
                    "route": self.route.to_json() if self.route else None}
        return {"ok": False, "error": f"unknown method {method}"}


