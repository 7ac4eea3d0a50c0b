"""`python -m harness.stage`: one stage process, serving until SIGTERM.

`--model PATH --port N [--name NAME]` serves a partition over gRPC (KServe v2,
plus the JSON `harness.StageControl` service on the same port); `--null TENSORS`
serves no model and returns its inputs. A stage started by the harness also
gets its route, a ready file, an events file and `--host`: its node's emulated
address, the only one it listens on.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import sys
import threading
from concurrent import futures

import grpc
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from harness.core import hostclock
from harness.core.config import ConfigError
from harness.pipeline.client import CONTROL_SERVICE, GRPC_OPTIONS
from harness.pipeline.node import lean
from harness.pipeline.node.health import EventSink
from harness.pipeline.node.runner import Runner, UpstreamRunner, first_inference
from harness.pipeline.node.stage import Stage
from harness.pipeline.routing import Route


def _control_handler(stage: Stage) -> grpc.GenericRpcHandler:
    def handler(method: str):
        return grpc.unary_unary_rpc_method_handler(
            lambda body, _ctx: stage.control(method, body),
            request_deserializer=lambda b: json.loads(b or b"{}"),
            response_serializer=lambda d: json.dumps(d).encode())

    return grpc.method_handlers_generic_handler(
        CONTROL_SERVICE, {m: handler(m) for m in ("SetRoute", "Stats", "LoadModel")})



def serve(stage: Stage, port: int, host: str, workers: int = 64) -> grpc.Server:
    # `host` is one address, never a wildcard: in a node, its emulated address only, so the
    # stage is reachable over the emulated links and nowhere else.
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



def load_joiner(target: str, args: str, null: str | None, runner: Runner):
    """`MODULE:CLASS` built with `--join-args` and, for a --null stage, the tensor it joins
    (a technique's fusion), else the stage's model (a join stage: it runs the model)."""
    module, _, cls = target.partition(":")
    try:
        kwargs = json.loads(args)
        if null:
            kwargs["tensor"] = null.split(",")[0]
        else:
            kwargs["runner"] = runner
        return getattr(importlib.import_module(module), cls)(**kwargs)
    except (ImportError, AttributeError, ValueError, TypeError) as e:
        raise ConfigError(f"--join={target!r}: {e}") from None


def main(argv: list[str] | None = None) -> int:
    t_start = hostclock.now()
    ap = argparse.ArgumentParser(prog="python -m harness.stage", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="ONNX partition to serve (omit with --null)")
    ap.add_argument("--null", metavar="TENSORS", default=None,
                    help="null stage: no model, returns these comma-separated inputs")
    ap.add_argument("--upstream", metavar="HOST:PORT", default=None,
                    help="no model here: forward to this KServe v2 server's model --name "
                         "(a stage from a container image in the same node)")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1",
                    help="the one address to listen on (the harness gives the node's "
                         "emulated address; default loopback: standalone, nothing outside "
                         "this machine reaches it)")
    ap.add_argument("--name", help="model name served (default: the file's stem)")
    ap.add_argument("--node", default=os.uname().nodename, help="node name for `path`")
    ap.add_argument("--route", default="", help="JSON route to the next stage")
    ap.add_argument("--providers", default="CPUExecutionProvider",
                    help="comma-separated ONNX Runtime execution providers")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    ap.add_argument("--ready-file", help="write {providers, pid, timings} here once serving")
    ap.add_argument("--events", help="append technique events (health transitions) here")
    ap.add_argument("--join", metavar="MODULE:CLASS", default="",
                    help="a --null stage that joins the requests sharing an id (a technique's "
                         "node part, e.g. sensing redundancy's fusion)")
    ap.add_argument("--join-args", default="{}", help="JSON keyword arguments of --join")
    ap.add_argument("--lean", action="store_true",
                    help="also serve stage-to-stage calls on --port + 1000, and call the "
                         "next stage there (harness.pipeline.node.lean)")
    a = ap.parse_args(argv)
    try:
        if sum(x is not None for x in (a.model, a.null, a.upstream)) != 1:
            raise ConfigError("--model: give exactly one of --model PATH, --null TENSORS or "
                              "--upstream HOST:PORT")
        if a.upstream and not a.name:
            raise ConfigError("--name: --upstream needs the model name it serves")
        if not 0 < a.port < 65536 - (lean.OFFSET if a.lean else 0):
            raise ConfigError(f"--port={a.port}: must be 1-65535"
                              + (f" - {lean.OFFSET} with --lean" if a.lean else ""))
        t_load = hostclock.now()
        if a.upstream:
            try:
                runner: Runner = UpstreamRunner(a.upstream, a.name)
            except TimeoutError as e:
                raise ConfigError(f"--upstream={a.upstream}: {e}") from None
        else:
            runner = Runner(a.model, a.providers.split(","), a.threads,
                            a.null.split(",") if a.null else None)
        t_loaded = hostclock.now()
        first_inference(runner)
        t_first = hostclock.now()
        load_s = t_loaded - t_load
        name = a.name or (os.path.splitext(os.path.basename(a.model))[0] if a.model
                          else "null")
        try:
            route = Route.from_json(json.loads(a.route)) if a.route else None
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"--route={a.route!r}: {e}") from None
        stage = Stage(runner, name, a.node, route, EventSink(a.events, f"{a.node}:{name}"))
        stage.threads = a.threads
        if a.join:
            stage.joiner = load_joiner(a.join, a.join_args, a.null, runner)
        server = serve(stage, a.port, a.host)
        lean_server = None
        if a.lean:
            stage.calls.lean = True
            try:
                lean_server = lean.Server(stage, a.host, a.port + lean.OFFSET)
            except OSError as e:
                server.stop(None)
                raise ConfigError(f"--port={a.port}: cannot listen on "
                                  f"{a.host}:{a.port + lean.OFFSET} (the lean hop): "
                                  f"{e.strerror}") from None
    except ConfigError as e:
        print(f"stage error: {e}", file=sys.stderr)
        return 2
    info = {"pid": os.getpid(), "name": name, "port": a.port,
            "providers": runner.providers, "load_s": load_s,
            "upstream": getattr(runner, "metadata", None),
            # monotonic instants (shared by every namespace) for recovery breakdowns
            "t_start": t_start, "t_load": t_load, "t_loaded": t_loaded,
            "t_first_inference": t_first, "t_ready": hostclock.now()}
    if a.ready_file:
        from harness.core.files import write_json

        write_json(a.ready_file, info)
    print(json.dumps({"serving": info}), flush=True)
    done = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: done.set())
    done.wait()
    if lean_server is not None:
        lean_server.stop()
    server.stop(grace=0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
