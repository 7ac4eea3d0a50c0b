"""The pipeline's plan: its config checked against the topology and the model, as one value.

`plan_pipeline(config, topo)` checks what the config alone cannot (its nodes exist,
its cuts are cuts of the model, each join gets every input from one branch, its
ports fit, the chain carries what every stage needs) and returns a `PipelinePlan`:
the stages as written, where each runs (placement.py) and listens, where each sends
and what (the stage graph, graph.py), and the baseline routes. The plan is frozen
and never stored back on the config, which stays what the user wrote; whatever is
derived from the config and the topology is read off the plan, computed once.

Dependencies go one way: config <- placement <- plan <- deployment.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.config import ConfigError, fail
from harness.emulation.topology import Topology
from harness.pipeline import graph
from harness.pipeline.config import PipelineConfig, StageSpec, check_model, resolve
from harness.pipeline.placement import Placement, place
from harness.pipeline.routing import LEAN_PORT_OFFSET, Route


@dataclass(frozen=True)
class PipelinePlan:
    config: PipelineConfig  # what the user wrote (never changed by planning)
    stages: tuple[StageSpec, ...]
    ports: tuple[int, ...]  # per stage: the port each of its instances listens on
    next: tuple[int | None, ...]  # per stage: the stage it sends to (None: it answers)
    carried: tuple[tuple[str, ...], ...]  # per stage: the tensors it receives
    sends: tuple[tuple[str, ...], ...]  # per stage: what its baseline route sends on
    placement: Placement  # the nodes each stage runs on, and where each instance sends

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    def port_of(self, stage: str) -> int:
        """Where a stage listens: the pipeline's port, + n for the nth stage on its node
        (a stage placed by role: the pipeline's port, one stage per node)."""
        return self.ports[self.names.index(stage)]

    def spare_port(self, node: str, taken=()) -> int:
        """A port on `node` that no stage of the pipeline listens on, nor any in `taken`
        (for a technique's own instances there: a replica, an exit, a fusion stage)."""
        used = {p for s, p in zip(self.stages, self.ports, strict=True) if s.node == node}
        used |= set(taken)
        port = self.config.port
        while port in used:
            port += 1
        return port

    def next_index(self, i: int) -> int | None:
        """The stage stage `i` sends to (None: the last stage answers)."""
        return self.next[i]

    def upstream(self, i: int) -> list[int]:
        return [j for j, n in enumerate(self.next) if n == i]

    def joins(self) -> list[int]:
        """Stages several stages send to."""
        return [i for i in range(len(self.stages)) if len(self.upstream(i)) > 1]

    def entries(self) -> list[int]:
        """Stages no stage sends to: where sensors feed the pipeline."""
        return [i for i in range(len(self.stages)) if not self.upstream(i)]

    def carries(self) -> list[list[str]]:
        """For each stage, the tensors it receives: its inputs plus what later stages need
        (in a pipeline with a join: its inputs only; nothing rides along a branch)."""
        return [list(c) for c in self.carried]

    def entry_for(self, inputs: tuple[str, ...] | list[str]) -> int | None:
        """The entry stage a sensor sending `inputs` feeds (None: none takes them)."""
        return next((i for i in self.entries() if set(inputs) <= set(self.carried[i])), None)

    @property
    def fleet(self) -> bool:
        """Some stage runs on every node of a role (one instance per device, say)."""
        return any(s.role is not None for s in self.stages)

    def n_placed(self) -> int:
        """Instances the pipeline itself places (what a technique adds are replicas)."""
        return self.placement.n_instances

    def routes(self, ips: dict[str, str]) -> dict[str, Route | None]:
        """The baseline chain, as new routes (a technique may change its copies): each
        stage forwards to its next stage (the one after it, or its `next`) the tensors
        that stage receives which it has."""
        out: dict[str, Route | None] = {}
        for i, s in enumerate(self.stages):
            j = self.next[i]
            if j is None:
                out[s.name] = None
                continue
            nxt = self.stages[j]
            out[s.name] = Route(nxt.name, [f"{ips[nxt.node]}:{self.ports[j]}"],
                                list(self.sends[i]))
        return out


def plan_pipeline(pipe: PipelineConfig, topo: Topology, key: str = "pipeline") -> PipelinePlan:
    """The plan of `pipe` on `topo`; a one-line ConfigError naming the key when the nodes,
    the cuts, the joins, the ports or the tensors the chain carries do not fit. `pipe`
    itself is left as it is."""
    from harness.pipeline.partition import check_cut, load_model

    stages = tuple(pipe.stages)
    nodes = {n.name for n in topo.nodes}
    for i, s in enumerate(stages):
        if s.role is None and s.node not in nodes:
            fail(f"{key}.stages[{i}].node", s.node, "unknown node")
    placement = place(list(stages), topo, key)
    model = path = None
    if pipe.model_file is not None:
        path = resolve(pipe.model_file, f"{key}.model_file")
        try:
            model = load_model(path)
        except ConfigError as e:
            raise ConfigError(f"{key}.model_file={pipe.model_file!r}: {e}") from None
    for i, s in enumerate(stages):
        if s.model is None:
            assert model is not None and path is not None
            try:
                check_cut(model, s.inputs, s.outputs, s.name, path.name)
            except ConfigError as e:
                raise ConfigError(f"{key}.stages[{i}]: {e}") from None
        else:
            check_model(resolve(s.model, f"{key}.stages[{i}].model"), s, f"{key}.stages[{i}]")
    check_joins(stages, key)
    ports = tuple(pipe.port + sum(1 for t in stages[:i] if t.node == s.node and t.role is None)
                  for i, s in enumerate(stages))
    top = max((p for s, p in zip(stages, ports, strict=True) if s.role is None),
              default=pipe.port)
    if top + (LEAN_PORT_OFFSET if pipe.hop == "lean" else 0) > 65535:
        fail(f"{key}.port", pipe.port, f"its stages need ports up to {top}"
             + (f" and {top + LEAN_PORT_OFFSET} for the lean hop" if pipe.hop == "lean"
                else ""))
    if pipe.output not in stages[-1].outputs and stages[-1].model is None:
        fail(f"{key}.output", pipe.output, f"not an output of the last stage "
                                           f"{stages[-1].name}")
    carries = graph.carries(stages)  # raises if a stage needs a tensor nothing upstream has
    nexts = tuple(graph.next_index(stages, i) for i in range(len(stages)))
    joins = graph.joins(stages)
    sends = []
    for i, s in enumerate(stages):
        j = nexts[i]
        send = carries[j] if j is not None else []
        if j in joins:  # each branch sends the join what it has
            send = [t for t in send if t in s.outputs or t in carries[i]]
        sends.append(tuple(send))
    return PipelinePlan(pipe, stages, ports, nexts, tuple(tuple(c) for c in carries),
                        tuple(sends), placement)


def check_joins(stages, key: str) -> None:
    """Each input of a join comes from exactly one branch: the stage sending it there;
    the join is the last stage (it answers every branch; a stage after it would run
    once per branch); other stages take only what the stage before them gives."""
    joins = graph.joins(stages)
    for j in joins:
        if j != len(stages) - 1:
            fail(f"{key}.stages[{j}].name", stages[j].name,
                 "a join stage must be the last stage")
    for i, st in enumerate(stages):
        ups = graph.upstream(stages, i)
        if joins and len(ups) == 1:
            missing = [t for t in st.inputs if t not in stages[ups[0]].outputs]
            if missing:
                fail(f"{key}.stages[{i}].inputs", missing,
                     f"not outputs of {stages[ups[0]].name}, the stage sending to it "
                     "(in a pipeline with a join, nothing rides along)")
    for j in joins:
        st = stages[j]
        for t in st.inputs:
            senders = [stages[u].name for u in graph.upstream(stages, j)
                       if t in stages[u].outputs]
            if len(senders) != 1:
                fail(f"{key}.stages[{j}].inputs", t,
                     f"join stage {st.name} needs it from exactly one of the stages "
                     f"sending to it ({senders or 'none'} produce it)")
