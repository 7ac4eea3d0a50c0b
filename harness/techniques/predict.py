"""What an action would cost before it is taken: a request's latency along a path of stages.

The prediction is deliberately simple and stated: per hop, the round trip of the
emulated links between the two nodes (2 x one-way delay along the path traffic
takes: `Topology.path_links`, the rule the kernel routes follow), the tensors'
transfer time at that path's narrowest bandwidth, and the harness's own hop cost
(`hop_ms`, what `python -m harness.overhead` measures);
per stage, its partition's median inference time measured here, in process, on
one thread, scaled by the node's CPU share. Every input is recorded with the
plan, so a wrong prediction can be traced to the input that was wrong.
"""

from __future__ import annotations

import functools
import statistics
import time
from pathlib import Path

from harness.core.config import LinkProps
from harness.emulation.topology import Topology


def hop(topo: Topology, defaults: LinkProps, a: str, b: str, nbytes: int,
        hop_ms: float) -> dict:
    """One stage-to-stage call from a to b carrying `nbytes`: its links, round trip,
    transfer time and total, in ms."""
    links = topo.path_links(a, b, defaults)
    props = [topo.link(name).shaped_props(defaults) for name in links]
    rtt = 2 * sum(p.delay_ms or 0.0 for p in props)
    bws = [p.bw_mbit for p in props if p.bw_mbit]
    transfer = nbytes * 8 / (min(bws) * 1000) if bws else 0.0  # Mbit/s -> bits per ms
    return {"from": a, "to": b, "links": links, "rtt_ms": rtt, "transfer_ms": transfer,
            "hop_ms": hop_ms, "ms": rtt + transfer + hop_ms}


def compute_ms(model: Path) -> float:
    """A partition's median inference time here, in process, one thread, on zeros."""
    return _profile(str(model), model.stat().st_mtime_ns)[0]


def tensor_bytes(model: Path, names: list[str]) -> int:
    """Bytes of the tensors `names` a partition takes, batch 1."""
    sizes = _profile(str(model), model.stat().st_mtime_ns)[1]
    return sum(n for name, n in sizes.items() if name in names)


@functools.cache
def _profile(model: str, _mtime_ns: int, runs: int = 20) -> tuple[float, dict[str, int]]:
    """Each partition loaded and timed once per process (a plan's paths share stages):
    (median ms of `runs` inferences, bytes of each input at batch 1)."""
    from harness.pipeline.node.runner import Runner, first_inference

    runner = Runner(model, None, 1)
    feed = {name: runner.zeros(name) for name in runner.inputs}
    first_inference(runner)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        runner.session.run(None, feed)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), {name: int(x.nbytes) for name, x in feed.items()}


def latency(topo: Topology, defaults: LinkProps, sensor: str,
            path: list[tuple[str, Path, list[str]]], hop_ms: float) -> dict:
    """A request's predicted latency from `sensor` through `path` ((node, partition, the
    tensors it takes) per stage, in order): every hop and every stage's compute."""
    steps, node, total = [], sensor, 0.0
    for to, model, tensors in path:
        h = hop(topo, defaults, node, to, tensor_bytes(model, tensors), hop_ms)
        cpu = topo.node(to).cpu
        h["compute_ms"] = compute_ms(model) / (cpu if 0 < cpu < 1 else 1)
        h["stage"] = model.stem
        total += h["ms"] + h["compute_ms"]
        steps.append(h)
        node = to
    return {"predicted_ms": round(total, 3), "hops": steps}
