"""A sensor: replays its part of the schedule open loop against the first stage.

Run inside a sensor node by the harness:
`python -m harness.workload.node.sensor PLAN.json OUT.jsonl`.
It builds its payloads through the sample library its plan names (`samples`:
`_target_` + kwargs; `sensor_index` says which sensor of the library it is), so
it knows no data set. It warms the chain up with one unrecorded request, prints
`{"ready": true}` and reads `{"t0": ...}` from stdin. Each request then leaves at its scheduled
time whatever earlier requests are doing (open loop: a stalled pipeline must not
slow the load), and every answer or error is appended to OUT.jsonl as it
arrives, so a run that dies keeps what was recorded. Times are seconds since
run start, measured on CLOCK_MONOTONIC, which every namespace shares. It sends
at real-time priority (from its connection on: start-up runs at normal priority)
and leaves once the schedule (`end_s`) is over and its last requests' SLO has passed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from harness.core import hostclock
from harness.pipeline.client import CHANNEL_OPTIONS
from harness.pipeline.codec import decode_outputs, infer_request
from harness.workload.samples.base import SampleLibrary, build

SPIN_S = 0.0004  # sleep until this close to the send time, then spin


def payload(lib: SampleLibrary, plan: dict, sample_id: int) -> dict[str, np.ndarray]:
    """What this sensor observes of a sample (the library knows the data set)."""
    return lib.payload(sample_id, plan["sensor_index"], plan.get("noise_seed", 0))


def sleep_until(t: float) -> None:
    left = t - hostclock.now()
    if left > SPIN_S:
        time.sleep(left - SPIN_S)
    while hostclock.now() < t:
        pass


class Recorder:
    """Appends one JSON line per outcome; line-buffered so a crash loses nothing written."""

    def __init__(self, path: str) -> None:
        self.f = open(path, "a", buffering=1)
        self.lock = threading.Lock()
        self.pending = 0
        self.done = threading.Condition(self.lock)

    def write(self, rec: dict[str, Any]) -> None:
        line = json.dumps(rec)
        with self.lock:
            self.f.write(line + "\n")
            self.pending -= 1
            self.done.notify_all()


def warm_up(stub: pb_grpc.GRPCInferenceServiceStub, lib: SampleLibrary, plan: dict,
            sample_id: int) -> None:
    """One unrecorded request through the whole chain: connections exist before t0."""
    msg = infer_request(plan["model"], payload(lib, plan, sample_id), "warmup")
    for _ in range(100):
        try:
            stub.ModelInfer(msg, timeout=2)
            return
        except grpc.RpcError:
            time.sleep(0.1)
    raise RuntimeError(f"warm-up request to {plan['target']} failed for 10 s")


class SensorFault:
    """Noisy or stuck output, switched by the harness: SIGUSR1 re-reads OUT.fault.json."""

    def __init__(self, path: str, seed: int, lib: SampleLibrary) -> None:
        self.path, self.mode, self.lib = path, {}, lib
        self.rng = np.random.default_rng(seed)
        self.last: pb.ModelInferRequest | None = None

    def reload(self, *_: object) -> None:
        try:
            with open(self.path) as f:
                self.mode = json.load(f)
        except (OSError, ValueError):
            self.mode = {}

    def apply(self, msg, plan: dict, sample_id: int, rid: int, sched: float):
        """The request as the faulty sensor would send it."""
        if not self.mode:
            self.last = msg
            return msg
        if self.mode.get("stuck") and self.last is not None:
            stuck = pb.ModelInferRequest()
            stuck.CopyFrom(self.last)
            stuck.id = str(rid)
            stuck.parameters["scheduled_s"].double_param = float(sched)
            return stuck
        sigma = self.mode.get("noise_sigma", 0.5)
        noisy = {name: self.lib.noisy(x, self.rng, sigma)
                 for name, x in payload(self.lib, plan, sample_id).items()}
        return infer_request(plan["model"], noisy, str(rid),
                             {"sensor": plan["sensor"], "scheduled_s": float(sched),
                              "slo_ms": float(plan["slo_ms"]), "noisy": True})


def priority(policy: int, level: int, every_thread: bool = False) -> None:
    """The scheduling policy (sends on time: SCHED_FIFO) of this thread, and of the threads
    it starts from now on, or of every thread; where allowed."""
    for tid in os.listdir("/proc/self/task") if every_thread else ["0"]:
        try:
            os.sched_setscheduler(int(tid), policy, os.sched_param(level))
        except (OSError, AttributeError, ValueError):
            pass


def run(plan: dict, out: str, start: Any = sys.stdin) -> int:
    """Prepare, warm up, say ready, read t0 from `start`, then replay."""
    requests = plan["requests"]  # [request_id, sample_id, scheduled_s]
    lib = build(plan["samples"])
    # Each request names its sensor, schedule slot and deadline (the SLO) for the stages.
    msgs = [infer_request(plan["model"], payload(lib, plan, sample), str(rid),
                          {"sensor": plan["sensor"], "scheduled_s": float(sched),
                           "slo_ms": float(plan["slo_ms"])})
            for rid, sample, sched in requests]
    # Real time from here: gRPC's threads, which time the answers, inherit it. Not for the
    # set-up above (imports, payloads): a fleet's 100 sensors doing that at real-time
    # priority would starve everything else while they start.
    priority(os.SCHED_FIFO, 3)
    channel = grpc.insecure_channel(plan["target"], options=CHANNEL_OPTIONS)
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    if requests:
        warm_up(stub, lib, plan, requests[0][1])
    fault = SensorFault(out[:-len(".jsonl")] + ".fault.json" if out.endswith(".jsonl")
                        else out + ".fault.json", seed=len(requests), lib=lib)
    signal.signal(signal.SIGUSR1, fault.reload)
    print(json.dumps({"ready": True}), flush=True)
    t0 = float(json.loads(start.readline())["t0"])
    rec = Recorder(out)
    deadline = t0 + plan["deadline_s"]
    output = plan["output"]

    def finish(rid: int, sent_s: float, fut: grpc.Future) -> None:
        done_s = hostclock.now() - t0
        r: dict[str, Any] = {"request_id": rid, "sent_s": sent_s}
        try:
            resp = fut.result()
            logits = decode_outputs(resp)[output]
            r.update(outcome="answer", completed_s=done_s,
                     prediction=int(np.argmax(logits.reshape(-1))),
                     path=resp.parameters["path"].string_param,
                     degraded=bool(resp.parameters["degraded"].bool_param)
                     if "degraded" in resp.parameters else False)
            if "joined" in resp.parameters:  # which branches a join stage's answer used
                r["joined"] = resp.parameters["joined"].string_param
        except grpc.RpcError as e:
            lost = e.code() in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)
            r.update(outcome="lost" if lost else "error", completed_s=done_s,
                     error=f"{e.code().name}: {e.details()}"[:300])
        except Exception as e:  # a malformed answer is an error, not a crash of the sensor
            r.update(outcome="error", completed_s=done_s, error=f"{type(e).__name__}: {e}")
        rec.write(r)

    for (rid, sample, sched), msg in zip(requests, msgs, strict=True):
        msg = fault.apply(msg, plan, sample, rid, sched)
        sleep_until(t0 + sched)
        now = hostclock.now()
        with rec.lock:
            rec.pending += 1
        fut = stub.ModelInfer.future(msg, timeout=max(0.001, deadline - now))
        sent_s = now - t0
        fut.add_done_callback(lambda f, rid=rid, s=sent_s: finish(rid, s, f))
    with rec.lock:
        rec.done.wait_for(lambda: rec.pending == 0,
                          timeout=max(0.0, deadline - hostclock.now()) + 5)
    rec.f.close()
    # Leave once the schedule is over and its last requests' SLO has passed: a sensor
    # exiting costs CPU, and a fleet's sensors finishing one after another would delay
    # the other sensors' last requests (a request still out by then is late anyway).
    end = min(deadline, t0 + plan.get("end_s", 0.0) + plan["slo_ms"] / 1000)
    time.sleep(max(0.0, end - hostclock.now()))
    channel.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 2:
        print("usage: python -m harness.workload.node.sensor PLAN.json OUT.jsonl", file=sys.stderr)
        return 2
    with open(args[0]) as f:
        plan = json.load(f)
    code = run(plan, args[1])
    # Done (records closed). Tearing the interpreter down at real-time priority would
    # starve the stages still serving other sensors: a fleet's 100 sensors finish one
    # after another and took the last second's requests with them. Leave real time, and
    # skip the teardown.
    priority(os.SCHED_OTHER, 0, every_thread=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
