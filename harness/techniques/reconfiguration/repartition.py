"""Re-partitioning (technique.mode=repartition): the ways to serve a chain without stage k,
planned before the run, each with what it needs and what it is predicted to cost.

When stage k's node fails there are three kinds of move:

* `as_is`: start partition k unchanged on a surviving node (what mode=replace
  always does, on its configured node);
* `merge_up`: cut a new partition from the model spanning stages k-1 and k, and
  have stage k-1 (on its own node) load it in place of its own;
* `merge_down`: the same with stages k and k+1, loaded by stage k+1.

Cut points are the named tensors of the model (the partitioner validates every
cut). Each move is judged by memory -- a node's `mem_mb` (0: unlimited) against
`stage_mb` per stage process plus the partitions' sizes; a new process costs a
stage, a merge only the bigger partition -- and by its predicted end-to-end latency
(harness.techniques.predict: links, tensor sizes, CPU shares, measured inference
times). The controller chooses at failure time among the moves that fit and avoid
the failed node: the lowest predicted latency.
"""

from __future__ import annotations

from pathlib import Path

from harness.core.config import ConfigError, LinkProps
from harness.emulation.topology import Topology
from harness.pipeline.config import resolve
from harness.pipeline.plan import PipelinePlan
from harness.pipeline.routing import Route
from harness.techniques import predict


def _mb(path: Path) -> float:
    return path.stat().st_size / 2**20


def plan_moves(plan: PipelinePlan, files: dict[str, Path], topo: Topology,
               defaults: LinkProps, ips: dict[str, str], stage: str, parts_dir: Path,
               stage_mb: float, hop_ms: float, base: dict[str, Route | None],
               other_procs: dict[str, int] | None = None) -> list[dict]:
    """Every move for stage `stage`'s failure, as JSON for the controller.
    `other_procs`: processes of about a stage's size on a node besides its stages (the
    controller's own)."""
    names = [s.name for s in plan.stages]
    k, carries = names.index(stage), plan.carries()
    st = plan.stages
    sensor = next(n.name for n in topo.nodes if n.role == "sensor")
    used = {n: stage_mb * c for n, c in (other_procs or {}).items()}  # node -> memory
    for s in st:
        used[s.node] = used.get(s.node, 0.0) + stage_mb + _mb(files[s.name])
    chain = [(s.node, files[s.name], carries[j]) for j, s in enumerate(st)]
    up = st[k - 1]
    to_up = base[up.name]  # the upstream stage's route, re-targeted by each move
    assert to_up is not None
    moves = []

    def move(kind: str, node: str, path: list, need_mb: float, **more) -> None:
        mem = topo.node(node).mem_mb
        free = None if not mem else mem - used.get(node, 0.0)
        moves.append({"kind": kind, "node": node, "need_mb": round(need_mb, 2),
                      "free_mb": None if free is None else round(free, 2),
                      "fits": free is None or need_mb <= free,
                      **predict.latency(topo, defaults, sensor, path, hop_ms), **more})

    for n in topo.nodes:
        if n.role in ("device", "edge", "cloud") and n.name != st[k].node:
            path = chain[:k] + [(n.name, files[stage], carries[k])] + chain[k + 1:]
            move("as_is", n.name, path, stage_mb + _mb(files[stage]),
                 route={up.name: _to(to_up, [f"{ips[n.name]}:{plan.spare_port(n.name)}"])})
    model_file = plan.config.model_file
    model = resolve(model_file, "pipeline.model_file") if model_file else None
    if model is None:
        return moves
    parts_dir.mkdir(parents=True, exist_ok=True)
    if k + 1 < len(st):  # stage k+1 takes k's part
        nxt = st[k + 1]
        ins = merge_down_cut(plan, k)[0]
        cut = _cut(model, f"{stage}_{nxt.name}", ins, nxt.outputs, parts_dir)
        if cut is not None:
            path = chain[:k] + [(nxt.node, cut, ins)] + chain[k + 2:]
            move("merge_down", nxt.node, path, _mb(cut) - _mb(files[nxt.name]),
                 into=nxt.name, file=str(cut), cut={"inputs": ins, "outputs": nxt.outputs},
                 load=f"{ips[nxt.node]}:{plan.port_of(nxt.name)}",
                 route={up.name: {**_to(to_up, [f"{ips[nxt.node]}:"
                                                f"{plan.port_of(nxt.name)}"]),
                                  "model": nxt.name, "inputs": ins}})
    if k >= 1:  # stage k-1 takes k's part: it produces what k+1 receives
        later = carries[k + 1] if k + 1 < len(st) else st[k].outputs
        outs = [t for t in later if t not in carries[k - 1]]
        cut = _cut(model, f"{up.name}_{stage}", up.inputs, outs, parts_dir)
        if cut is not None:
            path = chain[:k - 1] + [(up.node, cut, carries[k - 1])] + chain[k + 1:]
            route = base[stage]  # the merged stage sends where stage k sent
            move("merge_up", up.node, path, _mb(cut) - _mb(files[up.name]),
                 into=up.name, file=str(cut), cut={"inputs": up.inputs, "outputs": outs},
                 load=f"{ips[up.node]}:{plan.port_of(up.name)}",
                 route={up.name: route.to_json() if route else None})
    return moves


def merge_down_cut(plan: PipelinePlan, k: int) -> tuple[list[str], list[str]]:
    """Stages k and k+1 as one partition: what both read from outside, what k+1 gives."""
    st, nxt = plan.stages[k], plan.stages[k + 1]
    ins = list(dict.fromkeys(st.inputs + [t for t in nxt.inputs if t not in st.outputs]))
    return ins, list(nxt.outputs)


def _to(route: Route, targets: list[str]) -> dict:
    return {**route.to_json(), "targets": targets}


def _cut(model: Path, name: str, ins: list[str], outs: list[str], out_dir: Path) -> Path | None:
    """The new partition's file, or None when the tensors are not a valid cut."""
    from harness.pipeline.partition import split_model

    try:
        return split_model(model, {name: (ins, outs)}, out_dir)[name]
    except ConfigError:
        return None
