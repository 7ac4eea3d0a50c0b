"""The null-stage benchmark: what one pipeline hop costs over in-process ONNX Runtime.

`python -m harness.measure.overhead [--n 500] [--warmup 50]` measures, all on loopback,
with every ONNX Runtime session (in this process and in each stage) pinned to
one intra-op thread:

(a) in-process: `session.run` of an identity model on a 64 KB tensor;
(b) client -> stage(identity): one round trip to a stage serving that model;
(c) client -> null stage -> stage(identity): the same, through a null stage
    (`--null x`, no model) that forwards the tensor.

The identity model (built here with onnx.helper in a temp dir) maps input `x`
float32 [1, 16384] (64 KB) to output `y` through one Identity node. The null
stage returns its input `x` as its output, so its route sends `x` on
(`{"model": "identity", "inputs": ["x"]}`); the identity stage is the last one
and answers `y`. Each remote call builds the request (`harness.pipeline.codec.infer_request`)
and decodes the answer, over one reused channel per target (raw KServe v2
stub); (b) and (c) are measured interleaved, call by call, so that drift on the
machine affects both alike.

Figures (p50, p99 in ms): per-hop overhead = (c) - (b) at p50; stage overhead
over in-process = (b) - (a) at p50. Prints a table and one JSON line; exits 0
if the per-hop overhead p50 <= 1 ms (`TARGET_HOP_MS`), else 1; 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

N_FLOATS = 16384  # float32 [1, 16384] = 64 KB
TARGET_HOP_MS = 1.0
IDENTITY = "identity"
from harness.core.paths import REPO  # noqa: E402


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
                              producer_name="harness.measure.overhead")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


# -- stage processes ----------------------------------------------------------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now on ``host`` (the kernel's pick for a bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_stage(*args: str, timeout: float = 20.0) -> tuple[subprocess.Popen, dict]:
    """Start `python -m harness.stage ARGS` and wait for its `{"serving": ...}` line.

    Returns (process, serving info). The caller owns the process (`stop_stage`);
    if it does not come up in ``timeout`` s it is killed and RuntimeError names
    its stderr.
    """
    proc = subprocess.Popen([sys.executable, "-m", "harness.stage", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        return proc, _wait_serving(proc, timeout)
    except BaseException:
        stop_stage(proc)
        raise


def _wait_serving(proc: subprocess.Popen, timeout: float) -> dict:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not sel.select(left):
                continue
            line = proc.stdout.readline()
            if not line:  # EOF: the process ended
                break
            if line.startswith('{"serving"'):
                return json.loads(line)["serving"]
    proc.kill()
    err = proc.communicate()[1].strip() if proc.stderr else ""
    raise RuntimeError(f"stage {proc.args[3:]} did not start (exit {proc.returncode}): "
                       f"{err.splitlines()[-1] if err else 'no output'}")


def stop_stage(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it is still there after 3 s; always reaped."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.communicate()


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
    """A KServe v2 client over one reused channel (the raw stub, no extra layers)."""

    def __init__(self, target: str, model: str) -> None:
        import grpc
        from tritonclient.grpc import service_pb2_grpc as pb_grpc

        from harness.pipeline.client import GRPC_OPTIONS

        self.channel = grpc.insecure_channel(target, options=GRPC_OPTIONS)
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)
        self.model = model

    def infer(self, x: np.ndarray, timeout: float = 10.0) -> np.ndarray:
        from harness.pipeline.codec import decode_outputs, infer_request

        resp = self.stub.ModelInfer(infer_request(self.model, {"x": x}), timeout=timeout)
        return decode_outputs(resp)["y"]

    def close(self) -> None:
        self.channel.close()


def measure_remote(targets: dict[str, tuple[str, str]], n: int,
                   warmup: int = 50) -> dict[str, list[float]]:
    """Durations (s) of round trips to each target (label -> (host:port, model)), interleaved.

    Every answer is checked to be the tensor sent (ValueError otherwise).
    """
    x = np.random.default_rng(1).random((1, N_FLOATS), dtype=np.float32)
    clients = {label: Client(t, model) for label, (t, model) in targets.items()}
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
        p_id = free_port()
        proc, _ = start_stage("--model", str(model_path), "--name", IDENTITY, "--host", host,
                              "--port", str(p_id), "--threads", "1", "--node", "identity")
        procs.append(proc)
        route = {"model": IDENTITY, "targets": [f"{host}:{p_id}"], "inputs": ["x"]}
        p_null = free_port()
        proc, _ = start_stage("--null", "x", "--host", host, "--port", str(p_null),
                              "--threads", "1", "--node", "null", "--route", json.dumps(route))
        procs.append(proc)
        yield {"direct": (f"{host}:{p_id}", IDENTITY), "via_null": (f"{host}:{p_null}", "null")}
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
    direct, via_null = percentiles(remote["direct"]), percentiles(remote["via_null"])
    return figures(inproc, direct, via_null, n, warmup)


def figures(inproc: dict, direct: dict, via_null: dict, n: int, warmup: int) -> dict:
    hop = via_null["p50_ms"] - direct["p50_ms"]
    return {
        "n": n, "warmup": warmup, "tensor_bytes": N_FLOATS * 4, "intra_op_threads": 1,
        "inprocess": inproc, "direct": direct, "via_null": via_null,
        "hop_overhead_p50_ms": hop,
        "hop_overhead_p99_ms": via_null["p99_ms"] - direct["p99_ms"],
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
            ("(c) client -> null stage -> stage", f["via_null"])]
    for label, p in rows:
        t.add_row(label, f"{p['p50_ms']:.3f}", f"{p['p99_ms']:.3f}")
    t.add_row("per-hop overhead (c) - (b)", f"{f['hop_overhead_p50_ms']:.3f}",
              f"{f['hop_overhead_p99_ms']:.3f}")
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
    a = ap.parse_args(argv)
    if a.n < 1 or a.warmup < 0:
        print(f"overhead error: --n={a.n} must be >= 1 and --warmup={a.warmup} >= 0",
              file=sys.stderr)
        return 2
    f = run(a.n, a.warmup)
    print_table(f)
    print(json.dumps({"overhead": f}), flush=True)
    return 0 if f["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
