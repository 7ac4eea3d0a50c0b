"""Late fusion for sensing redundancy: decide with whatever observations arrive in time.

Several sensors observe the same phenomenon and send the same request id down their
paths; the fusion stage holds each id's arrivals until all `expected` are in or
`wait_ms` after the first one, then answers every waiting caller with the mean of the
logits it has. A sensor that is down or late costs accuracy, not availability.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

import numpy as np

from harness.pipeline.node.join import wait_decided


class Fuser:
    def __init__(self, expected: int, wait_ms: float, tensor: str = "logits",
                 keep: int = 10_000) -> None:
        self.expected, self.wait_s, self.tensor, self.keep = expected, wait_ms / 1000, tensor, keep
        self.lock = threading.Condition()
        self.pending: dict[str, list[np.ndarray]] = {}
        self.first: dict[str, float] = {}
        self.decided: OrderedDict[str, tuple[np.ndarray, int]] = OrderedDict()

    def join(self, request_id: str, tensors: dict[str, np.ndarray]) -> tuple[dict, int]:
        """Block until this id is decided; (fused outputs, number of observations fused)."""
        x = tensors[self.tensor]
        with self.lock:
            if request_id in self.decided:  # a straggler after the decision
                fused, n = self.decided[request_id]
                return {self.tensor: fused}, n
            arrivals = self.pending.setdefault(request_id, [])
            arrivals.append(x)
            deadline = self.first.setdefault(request_id, time.monotonic()) + self.wait_s
            wait_decided(self, request_id, deadline, len(arrivals) >= self.expected)
            fused, n = self.decided[request_id]
        return {self.tensor: fused}, n

    def _decide(self, request_id: str) -> None:
        arrivals = self.pending.pop(request_id)
        self.first.pop(request_id, None)
        self.decided[request_id] = (np.mean(np.stack(arrivals), axis=0).astype(np.float32),
                                    len(arrivals))
        while len(self.decided) > self.keep:
            self.decided.popitem(last=False)
        self.lock.notify_all()
