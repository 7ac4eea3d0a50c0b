"""A join stage's wait: one model run per request id, on the tensors of all its branches.

Several branches (an accelerometer's encoder and a gyroscope's, say) send the
same request id to the join stage, each with its own part of the model's
inputs. The first arrival starts a clock; the model runs once all parts are in,
and every waiting caller gets the same answer. If `wait_ms` passes first, a
partial join (a technique's choice; needs the model's `mask` input) runs the
model with the missing inputs as zeros and their mask columns 0 -- a missing
modality costs accuracy, not availability; otherwise the request fails, naming
what did not come.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

import numpy as np


def wait_decided(owner, request_id: str, deadline: float, complete: bool) -> None:
    """With `owner.lock` (a Condition) held: decide now if all has arrived, else wait
    until another arrival decides or the deadline passes (then decide with what came).
    Shared by every stage that holds a request id for its other arrivals."""
    if complete:
        owner._decide(request_id)
    while request_id not in owner.decided:
        left = deadline - time.monotonic()
        if left <= 0:
            owner._decide(request_id)
            break
        owner.lock.wait(left)


class Missing(RuntimeError):
    """A request's join timed out without some of its inputs (and partial joins are off)."""


class Join:
    def __init__(self, runner, inputs: list[str], mask: str | None, wait_ms: float,
                 partial: bool, keep: int = 10_000) -> None:
        if partial and mask is None:
            raise ValueError("partial: a join answers without an input only through a mask")
        self.runner, self.inputs, self.mask = runner, list(inputs), mask
        self.wait_s, self.partial, self.keep = wait_ms / 1000, partial, keep
        self.lock = threading.Condition()
        self.pending: dict[str, dict[str, np.ndarray]] = {}
        self.first: dict[str, float] = {}
        # id -> (outputs, inputs that arrived) or the error every caller of that id gets
        self.decided: OrderedDict[str, tuple[dict, list[str]] | Exception] = OrderedDict()

    def join(self, request_id: str, tensors: dict[str, np.ndarray]
             ) -> tuple[dict[str, np.ndarray], int, str]:
        """Block until this id is decided: (outputs, how many inputs, which: "a+b")."""
        with self.lock:
            if isinstance(self.decided.get(request_id), Exception):
                # its callers have the error; a later arrival (a retry of the same id, as
                # a sensor's warm-up makes) waits afresh instead of failing at once
                del self.decided[request_id]
            if request_id not in self.decided:
                got = self.pending.setdefault(request_id, {})
                got.update({k: v for k, v in tensors.items() if k in self.inputs})
                deadline = self.first.setdefault(request_id, time.monotonic()) + self.wait_s
                wait_decided(self, request_id, deadline, len(got) == len(self.inputs))
            result = self.decided[request_id]  # a straggler gets the decision made
        if isinstance(result, Exception):
            raise result
        outputs, arrived = result
        return outputs, len(arrived), "+".join(arrived)

    def _decide(self, request_id: str) -> None:
        """Called with the lock held; the model runs under it (one join at a time)."""
        got = self.pending.pop(request_id)
        self.first.pop(request_id, None)
        arrived = [t for t in self.inputs if t in got]
        missing = [t for t in self.inputs if t not in got]
        result: tuple[dict, list[str]] | Exception
        if missing and not self.partial:
            result = Missing(f"join: no {', '.join(missing)} within {self.wait_s * 1000:g} ms")
        else:
            batch = next(iter(got.values())).shape[0]
            feed = dict(got)
            for t in missing:
                feed[t] = self.runner.zeros(t, batch)
            if self.mask is not None:
                feed[self.mask] = np.array([[float(t in got) for t in self.inputs]] * batch,
                                           np.float32)
            try:
                result = (self.runner.run(feed), arrived)
            except Exception as e:  # a bad tensor fails every caller of this id alike
                result = e
        self.decided[request_id] = result
        while len(self.decided) > self.keep:
            self.decided.popitem(last=False)
        self.lock.notify_all()
