"""A stage's own bookkeeping, in process (no server, no root)."""

from __future__ import annotations

import threading

import pytest
from tritonclient.grpc import service_pb2 as pb

from harness.pipeline.node.stage import Stage


class Aborted(Exception):
    pass


class Context:
    """What ModelInfer uses of a grpc.ServicerContext; abort raises, as grpc's does."""

    def abort(self, code, details):
        raise Aborted(code, details)

    def set_trailing_metadata(self, md) -> None:
        pass


class Broken:
    def run(self, tensors):
        raise ValueError("no such input")


class Guarded(dict):
    """Stats that note every write made without the stage's lock held."""

    def __init__(self, data: dict, lock: threading.Lock) -> None:
        super().__init__(data)
        self.lock, self.unlocked = lock, []

    def __setitem__(self, key, value) -> None:
        if not self.lock.locked():
            self.unlocked.append(key)
        super().__setitem__(key, value)


def test_a_failed_inference_counts_its_error_under_the_lock() -> None:
    """Deterministic stand-in for a race: stats += 1 outside the lock can lose a count
    to a concurrent request; here every write is checked for the lock instead."""
    stage = Stage(Broken(), "m", "n1", None)  # type: ignore[arg-type]
    try:
        stage.stats = Guarded(stage.stats, stage.lock)
        with pytest.raises(Aborted, match="no such input"):
            stage.ModelInfer(pb.ModelInferRequest(model_name="m"), Context())
        assert (stage.stats["requests"], stage.stats["errors"]) == (1, 1)
        assert stage.stats.unlocked == []
    finally:
        stage.health.stopped.set()
