"""ONNX Runtime sessions as every stage (and the in-process reference) loads them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from harness.core.config import fail


def _first_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def load_session(path: str | os.PathLike, providers: Sequence[str] | None = None,
                 intra_op_threads: int = 1):
    """An onnxruntime InferenceSession pinned to ``intra_op_threads`` and one inter-op thread.

    Pinning matters: ORT's default spreads one request over every core, which
    on a node with a CPU quota makes latency depend on scheduling, not on the
    model. ConfigError (one line) for a missing or unreadable model.
    """
    import onnxruntime as ort

    path = Path(path)
    if isinstance(intra_op_threads, bool) or not isinstance(intra_op_threads, int) \
            or intra_op_threads < 1:
        fail("intra_op_threads", intra_op_threads, "must be an integer >= 1")
    if not path.is_file():
        fail("model", str(path), "cannot read ONNX model (no such file)")
    so = ort.SessionOptions()
    so.intra_op_num_threads = intra_op_threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3  # errors only: warnings would interleave with run output
    try:
        return ort.InferenceSession(str(path), sess_options=so,
                                    providers=list(providers or ["CPUExecutionProvider"]))
    except Exception as e:
        fail("model", str(path), f"cannot read ONNX model ({_first_line(e)})")


def providers_used(session) -> list[str]:
    """The execution providers the session really uses (ORT falls back silently)."""
    return list(session.get_providers())
