"""A stage's command line: bad starts exit 2 with one line; the null-stage benchmark.

No root needed: stages are `python -m harness.stage` processes on 127.0.0.1.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tc

from harness.bench import overhead
from harness.bench.stage_procs import free_port, start_stage
from harness.pipeline.sessions import load_session

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "models" / "digits"
HOST = "127.0.0.1"


def run_stage(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.stage", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=30)


def assert_exit_2_one_line(r: subprocess.CompletedProcess, *words: str) -> None:
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("stage error: "), r.stderr
    for w in words:
        assert w in lines[0]
    assert "serving" not in r.stdout


@pytest.mark.parametrize("case", ["missing", "corrupt", "port0", "port70000", "route-json",
                                  "route-keys"])
def test_bad_start_exits_2_with_one_line(case, tmp_path):
    model, port, route, words = str(DIGITS / "full.onnx"), str(free_port(HOST)), [], []
    if case == "missing":
        model, words = str(tmp_path / "absent.onnx"), ["absent.onnx", "no such file"]
    elif case == "corrupt":
        bad = tmp_path / "corrupt.onnx"
        bad.write_bytes(b"this is not an onnx model\n" * 10)
        model, words = str(bad), ["corrupt.onnx", "cannot read ONNX model"]
    elif case.startswith("port"):
        port, words = case[4:], [f"--port={case[4:]}"]
    elif case == "route-json":
        route, words = ["--route", "{not json"], ["--route="]
    else:
        route, words = ["--route", json.dumps({"model": "middle"})], ["--route=", "targets"]
    r = run_stage("--model", model, "--host", HOST, "--port", port, *route)
    assert_exit_2_one_line(r, *words)


def test_port_in_use_exits_2():
    """A port held by another stage (gRPC's default SO_REUSEPORT would share it silently)
    or by any socket: exit 2. gRPC core logs its own line before the stage's."""
    port = str(free_port(HOST))
    proc, _ = start_stage("--model", str(DIGITS / "full.onnx"), "--host", HOST, "--port", port)
    try:
        _port_in_use_exits_2(port)
        assert tc.InferenceServerClient(url=f"{HOST}:{port}").is_model_ready("full")
    finally:
        proc.kill()
        proc.communicate()


def _port_in_use_exits_2(port: str) -> None:
    with socket.socket() as s:
        s.bind((HOST, 0))
        s.listen()
        for p in (port, str(s.getsockname()[1])):
            r = run_stage("--model", str(DIGITS / "full.onnx"), "--host", HOST, "--port", p)
            assert r.returncode == 2, r.stderr
            last = r.stderr.splitlines()[-1]
            assert last == f"stage error: --port={p}: cannot listen on {HOST}:{p}"


# -- the null-stage benchmark (figures only; the 1 ms target belongs to the benchmark) -------


def test_overhead_figures_are_positive_and_finite(tmp_path):
    model = overhead.build_identity_model(tmp_path / "identity.onnx")
    x = np.random.default_rng(0).random((1, overhead.N_FLOATS), dtype=np.float32)
    assert x.nbytes == 64 * 1024
    np.testing.assert_array_equal(load_session(model).run(["y"], {"x": x})[0], x)

    f = overhead.run(n=100, warmup=10)
    for key in ("inprocess", "direct", "via_null", "via_null_grpc", "lean_direct",
                "lean_via_null"):
        for p in ("p50_ms", "p99_ms"):
            assert math.isfinite(f[key][p]) and f[key][p] > 0, (key, p, f)
        assert f[key]["p99_ms"] >= f[key]["p50_ms"]
    for key in ("hop_overhead_p50_ms", "hop_overhead_from_grpc_p50_ms",
                "hop_overhead_grpc_p50_ms", "stage_overhead_p50_ms"):
        assert math.isfinite(f[key]) and f[key] > 0, (key, f)
    assert f["n"] == 100 and f["tensor_bytes"] == 65536 and isinstance(f["ok"], bool)
    json.dumps(f)  # the JSON line the CLI prints


def test_overhead_bad_n_exits_2(capsys):
    assert overhead.main(["--n", "0"]) == 2
    assert capsys.readouterr().err.startswith("overhead error: --n=0")


def test_hop_floors_relay_every_payload_and_cost_more_than_direct():
    """Each floor's relay answers the payload it was sent (measure raises otherwise) and a
    hop through a relay process costs more than none: it adds a round trip."""
    from harness.bench.hop_floor import floors

    fl = floors(n=60, warmup=5, nbytes=16384)
    assert set(fl) == {"tcp", "grpc unary", "grpc stream"}
    for kind, r in fl.items():
        assert all(math.isfinite(v) for v in r.values()), (kind, r)
        assert r["relay_p50_ms"] > r["direct_p50_ms"] > 0, (kind, r)
