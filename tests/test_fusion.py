"""Late fusion without a network: joins, waits, stragglers and concurrency."""

from __future__ import annotations

import threading
import time

import numpy as np

from harness.techniques.sensing_redundancy.node.fusion import Fuser


def test_all_arrive_mean_at_once() -> None:
    f = Fuser(2, wait_ms=1000)
    out: dict = {}

    def call(i: int, v: float) -> None:
        out[i] = f.join("7", {"logits": np.full((1, 3), v, np.float32)})

    ts = [threading.Thread(target=call, args=(i, v)) for i, v in ((0, 1.0), (1, 3.0))]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert time.monotonic() - t0 < 0.5  # did not wait for the deadline
    for fused, n in out.values():
        assert n == 2 and np.allclose(fused["logits"], 2.0)


def test_one_missing_decides_after_wait_and_straggler_gets_the_decision() -> None:
    f = Fuser(2, wait_ms=30)
    t0 = time.monotonic()
    fused, n = f.join("1", {"logits": np.ones((1, 2), np.float32)})
    assert n == 1 and 0.025 <= time.monotonic() - t0 < 0.5
    late, n2 = f.join("1", {"logits": np.zeros((1, 2), np.float32)})
    assert n2 == 1 and np.allclose(late["logits"], 1.0)


def test_many_concurrent_ids() -> None:
    f = Fuser(2, wait_ms=200)
    errors = []

    def call(rid: str, v: float) -> None:
        try:
            fused, n = f.join(rid, {"logits": np.full((1, 1), v, np.float32)})
            assert n == 2 and np.allclose(fused["logits"], 0.5)
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    ts = [threading.Thread(target=call, args=(str(i), v)) for i in range(100)
          for v in (0.0, 1.0)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
