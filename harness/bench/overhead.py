"""The null-stage benchmark: what one pipeline hop costs over in-process ONNX Runtime.

`python -m harness.bench.overhead [--n 500] [--warmup 50]` measures, all on loopback,
with every ONNX Runtime session (in this process and in each stage) pinned to
one intra-op thread:

(a) in-process: `session.run` of an identity model on a 64 KB tensor;
(b) client -> stage(identity): one round trip to a stage serving that model;
(c) client -> null stage -> stage(identity): the same, through a null stage
    (`--null x`, no model) that forwards the tensor over the lean hop, as the
    harness's stages call each other (`pipeline.hop: lean`);
(d) the same with the null stage calling over gRPC (`pipeline.hop: grpc`).

The identity model (built here with onnx.helper in a temp dir) maps input `x`
float32 [1, 16384] (64 KB) to output `y` through one Identity node. The null
stage returns its input `x` as its output, so its route sends `x` on
(`{"model": "identity", "inputs": ["x"]}`); the identity stage is the last one
and answers `y`. Each remote call builds the request (`harness.pipeline.codec.infer_request`)
and decodes the answer, over one reused channel per target (raw KServe v2
stub); (b), (c) and (d) are measured interleaved, call by call, so that drift on the
machine affects both alike.

Figures (p50, p99 in ms): per-hop overhead = (c) - (b) at p50 (over gRPC: (d) - (b));
stage overhead over in-process = (b) - (a) at p50. Prints a table and one JSON line;
exits 0 if the per-hop overhead p50 <= 0.3 ms (`TARGET_HOP_MS`), else 1; 2 on bad
input. `--floors` adds what a bare Python relay costs per hop (harness.bench.hop_floor).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

N_FLOATS = 16384  # float32 [1, 16384] = 64 KB
TARGET_HOP_MS = 0.3
IDENTITY = "identity"
from harness.bench.stage_procs import free_lean_port, start_stage, stop_stage  # noqa: E402


def build_identity_model(path: str | os.PathLike, n: int = N_FLOATS) -> Path:
    """Write an ONNX model `x` float32 [1, n] -> Identity -> `y` to ``path``."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], IDENTITY,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])])
    # opset 13 / IR 8: loadable by every onnxruntime this project allows (>= 1.16)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="harness.bench.overhead")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


# -- measuring ------------------------------------------------------------------------


def percentiles(samples_s: Sequence[float]) -> dict[str, float]:
    """p50 and p99 in ms of durations in s."""
    ms = np.asarray(samples_s, dtype=np.float64) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def _timed(fn: Callable[[], object], n: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def measure_inprocess(model_path: str | os.PathLike, n: int, warmup: int = 50) -> list[float]:
    """(a) Durations (s) of `session.run` on one intra-op thread."""
    from harness.pipeline.sessions import load_session

    session = load_session(model_path, ["CPUExecutionProvider"], 1)
    x = np.random.default_rng(0).random((1, N_FLOATS), dtype=np.float32)
    return _timed(lambda: session.run(["y"], {"x": x}), n, warmup)


class Client:
    """A KServe v2 client over one reused channel (the raw stub, no extra layers), or with
    `lean` over the lean hop, as a stage calls the next one."""

    def __init__(self, target: str, model: str, lean: bool = False) -> None:
        import grpc
        from tritonclient.grpc import service_pb2_grpc as pb_grpc

        from harness.pipeline.client import GRPC_OPTIONS
        from harness.pipeline.node import lean as lean_hop

        self.channel = lean_hop.Channel(target) if lean else \
            grpc.insecure_channel(target, options=GRPC_OPTIONS)
        self.stub = self.channel if lean else pb_grpc.GRPCInferenceServiceStub(self.channel)
        self.model = model

    def infer(self, x: np.ndarray, timeout: float = 10.0) -> np.ndarray:
        from harness.pipeline.codec import decode_outputs, infer_request

        resp = self.stub.ModelInfer(infer_request(self.model, {"x": x}), timeout=timeout)
        return decode_outputs(resp)["y"]

    def close(self) -> None:
        self.channel.close()


def measure_remote(targets: dict[str, tuple[str, str]], n: int,
                   warmup: int = 50) -> dict[str, list[float]]:
    """Durations (s) of round trips to each target (label -> (host:port, model)), interleaved;
    labels starting `lean_` are called over the lean hop.

    Every answer is checked to be the tensor sent (ValueError otherwise).
    """
    x = np.random.default_rng(1).random((1, N_FLOATS), dtype=np.float32)
    clients = {label: Client(t, model, label.startswith("lean_"))
               for label, (t, model) in targets.items()}
    try:
        for label, c in clients.items():
            y = c.infer(x)
            if not np.array_equal(y, x):
                raise ValueError(f"{label} {targets[label]}: answer differs from the input")
        for _ in range(warmup):
            for c in clients.values():
                c.infer(x)
        out: dict[str, list[float]] = {label: [] for label in clients}
        for _ in range(n):
            for label, c in clients.items():
                t0 = time.perf_counter()
                c.infer(x)
                out[label].append(time.perf_counter() - t0)
        return out
    finally:
        for c in clients.values():
            c.close()


@contextmanager
def stages(model_path: str | os.PathLike) -> Iterator[dict[str, tuple[str, str]]]:
    """The identity stage and a null stage routed to it, on loopback; both stopped on exit.

    Yields {"direct": identity stage, "via_null": null stage} as (host:port, model name).
    """
    host = "127.0.0.1"
    procs: list[subprocess.Popen] = []
    try:
        p_id = free_lean_port()
        proc, _ = start_stage("--model", str(model_path), "--name", IDENTITY, "--host", host,
                              "--port", str(p_id), "--threads", "1", "--node", "identity",
                              "--lean")
        procs.append(proc)
        route = json.dumps({"model": IDENTITY, "targets": [f"{host}:{p_id}"], "inputs": ["x"]})
        out = {"direct": (f"{host}:{p_id}", IDENTITY)}
        for label, lean in (("via_null", ["--lean"]), ("via_null_grpc", [])):
            p_null = free_lean_port()
            proc, _ = start_stage("--null", "x", "--host", host, "--port", str(p_null),
                                  "--threads", "1", "--node", "null", "--route", route, *lean)
            procs.append(proc)
            out[label] = (f"{host}:{p_null}", "null")
        # as inside a pipeline: the stage before calls over the lean hop too
        out["lean_direct"], out["lean_via_null"] = out["direct"], out["via_null"]
        yield out
    finally:
        for proc in procs:
            stop_stage(proc)


def run(n: int = 500, warmup: int = 50) -> dict:
    """All three measurements; the figures as one dict (ms)."""
    with tempfile.TemporaryDirectory(prefix="harness-overhead-") as tmp:
        model = build_identity_model(Path(tmp) / "identity.onnx")
        inproc = percentiles(measure_inprocess(model, n, warmup))
        with stages(model) as targets:
            remote = measure_remote(targets, n, warmup)
    p = {k: percentiles(v) for k, v in remote.items()}
    return figures(inproc, p["direct"], p["via_null"], n, warmup, p["via_null_grpc"],
                   p["lean_direct"], p["lean_via_null"])


def figures(inproc: dict, direct: dict, via_null: dict, n: int, warmup: int,
            via_null_grpc: dict, lean_direct: dict, lean_via_null: dict) -> dict:
    hop = lean_via_null["p50_ms"] - lean_direct["p50_ms"]
    return {
        "n": n, "warmup": warmup, "tensor_bytes": N_FLOATS * 4, "intra_op_threads": 1,
        "inprocess": inproc, "direct": direct, "via_null": via_null,
        "via_null_grpc": via_null_grpc, "lean_direct": lean_direct,
        "lean_via_null": lean_via_null,
        "hop_overhead_p50_ms": hop,
        "hop_overhead_p99_ms": lean_via_null["p99_ms"] - lean_direct["p99_ms"],
        "hop_overhead_from_grpc_p50_ms": via_null["p50_ms"] - direct["p50_ms"],
        "hop_overhead_grpc_p50_ms": via_null_grpc["p50_ms"] - direct["p50_ms"],
        "stage_overhead_p50_ms": direct["p50_ms"] - inproc["p50_ms"],
        "target_hop_ms": TARGET_HOP_MS,
        "ok": bool(math.isfinite(hop) and hop <= TARGET_HOP_MS),
    }


def print_table(f: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"null-stage overhead, {f['tensor_bytes'] // 1024} KB tensor, "
                    f"n={f['n']}, loopback")
    for col in ("measurement", "p50 ms", "p99 ms"):
        t.add_column(col, justify="left" if col == "measurement" else "right")
    rows = [("(a) in-process session.run", f["inprocess"]),
            ("(b) client -> stage", f["direct"]),
            ("(c) client -> null stage -> stage (lean hop)", f["via_null"]),
            ("(d) ... the null stage calling over gRPC", f["via_null_grpc"]),
            ("(e) client -lean-> stage", f["lean_direct"]),
            ("(f) client -lean-> null stage -lean-> stage", f["lean_via_null"])]
    for label, p in rows:
        t.add_row(label, f"{p['p50_ms']:.3f}", f"{p['p99_ms']:.3f}")
    t.add_row("per-hop overhead in a pipeline (f) - (e)", f"{f['hop_overhead_p50_ms']:.3f}",
              f"{f['hop_overhead_p99_ms']:.3f}")
    t.add_row("... entered over gRPC (c) - (b)", f"{f['hop_overhead_from_grpc_p50_ms']:.3f}", "")
    t.add_row("... all over gRPC (d) - (b)", f"{f['hop_overhead_grpc_p50_ms']:.3f}", "")
    t.add_row("stage over in-process (b) - (a)", f"{f['stage_overhead_p50_ms']:.3f}", "")
    Console().print(t)
    verdict = "ok" if f["ok"] else "MISSED"
    print(f"per-hop overhead p50 {f['hop_overhead_p50_ms']:.3f} ms, "
          f"target <= {f['target_hop_ms']} ms: {verdict}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.overhead", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="timed calls per measurement")
    ap.add_argument("--warmup", type=int, default=50, help="untimed calls first")
    ap.add_argument("--floors", action="store_true",
                    help="also measure what a bare Python relay costs per hop over raw TCP, "
                         "unary gRPC and one persistent gRPC stream (harness.bench.hop_floor)")
    a = ap.parse_args(argv)
    if a.n < 1 or a.warmup < 0:
        print(f"overhead error: --n={a.n} must be >= 1 and --warmup={a.warmup} >= 0",
              file=sys.stderr)
        return 2
    f = run(a.n, a.warmup)
    print_table(f)
    if a.floors:
        from harness.bench.hop_floor import floors, print_floors

        f["floors"] = floors(a.n, a.warmup, N_FLOATS * 4)
        print_floors(f["floors"])
    print(json.dumps({"overhead": f}), flush=True)
    return 0 if f["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
