"""The pipeline config: a model cut into stages at named tensors, each placed on a node.

Stages form a chain, each forwarding to the next the tensors it and later
stages need (e.g. the skip tensor `h` rides along from the head to the tail).
A stage may name a later stage as its `next` instead: several branches (one per
sensor modality, say) then meet at a join stage, which waits for each request's
tensors from all of them. Every check runs before the network exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.config import ConfigError, check_range, fail
from harness.core.paths import REPO
from harness.emulation.topology import Topology
from harness.pipeline.routing import HOPS, LEAN_PORT_OFFSET


@dataclass
class StageSpec:
    name: str
    node: str = ""  # the node serving it (or, with `role`, empty)
    inputs: list[str] = field(default_factory=list)  # cut: tensors entering this stage
    outputs: list[str] = field(default_factory=list)  # cut: tensors it produces
    model: str | None = None  # a ready partition file instead of a cut of model_file
    threads: int = 1  # ONNX Runtime intra-op threads
    providers: list[str] | None = None  # None: the node's providers (topology)
    # A server from a container image instead of this project's stage: any KServe v2 gRPC
    # server on `image_port` of the node, serving the model `name` (backend=docker). The
    # command may use {port}, {name}, {model} (this stage's cut of model_file) and {host}
    # (the address to listen on: loopback, where the stage in front of it calls it).
    image: str | None = None
    command: list[str] | None = None  # None: the image's own command
    env: dict[str, str] = field(default_factory=dict)
    image_port: int = 9000
    role: str | None = None  # instead of node: one instance on every node of this role
    next: str | None = None  # the stage it sends to (None: the one after it in the list)
    # A join stage (one that several stages send to) waits for a request's tensors from all
    # of them up to join_wait_ms; `mask` names its model input that says which of its
    # `inputs` arrived (1/0 per input, in order), so a technique may let it answer without
    # some (sensing_redundancy); without one, a missing input fails the request.
    mask: str | None = None
    join_wait_ms: float = 100.0

    def validate(self, key: str) -> None:
        if not self.name.isidentifier():
            fail(f"{key}.name", self.name, "must be an identifier")
        check_range(f"{key}.threads", self.threads, 1, 256)
        check_range(f"{key}.image_port", self.image_port, 1024, 65535)
        if self.image is not None and (not isinstance(self.image, str) or not self.image):
            fail(f"{key}.image", self.image, "must be an image name")
        if self.model is None and not (self.inputs and self.outputs):
            fail(f"{key}.inputs", self.inputs, "a cut stage needs inputs and outputs")
        if self.role is not None:
            from harness.emulation.topology import ROLES

            if self.node:
                fail(f"{key}.role", self.role, f"give node ({self.node}) or role, not both")
            if self.role not in ROLES:
                fail(f"{key}.role", self.role, f"unknown role (one of {', '.join(ROLES)})")
            if self.image is not None:
                fail(f"{key}.image", self.image, "a stage placed by role runs no image")
        elif not self.node:
            fail(f"{key}.node", self.node, "name the node serving the stage (or a role)")
        if not 0 < self.join_wait_ms <= 60_000:
            fail(f"{key}.join_wait_ms", self.join_wait_ms, "must be in (0, 60000]")


@dataclass
class PipelineConfig:
    model_file: str | None = "models/digits/full.onnx"  # None: every stage gives `model`
    output: str = "logits"  # the tensor the last stage answers with
    stages: list[StageSpec] = field(default_factory=list)
    port: int = 8001
    # how stages call each other: lean (KServe v2 messages over plain TCP on port + 1000:
    # a hop costs a fraction of gRPC's) or grpc; outside clients always get gRPC
    hop: str = "lean"
    ready_timeout_s: float = 60.0
    # where each instance runs and sends (harness.pipeline.placement.Placement), set by
    # check_against: derived from the topology, never configured
    placement: Any = field(default=None, init=False, repr=False, compare=False)

    def validate(self, key: str) -> None:
        if not self.stages:
            fail(f"{key}.stages", [], "a pipeline needs at least one stage")
        names = [s.name for s in self.stages]
        for i, n in enumerate(names):
            if n in names[:i]:
                fail(f"{key}.stages[{i}].name", n, "duplicate stage name")
        for i, st in enumerate(self.stages):
            if st.next is not None and st.next not in names[i + 1:]:
                fail(f"{key}.stages[{i}].next", st.next,
                     f"not a stage after {st.name} (one of {names[i + 1:]})")
        if self.joins():
            for i, st in enumerate(self.stages):
                if st.role is not None:
                    fail(f"{key}.stages[{i}].role", st.role, "a pipeline with a join places "
                                                             "its stages by node")
        for i, st in enumerate(self.stages):
            if st.mask is not None and i not in self.joins():
                fail(f"{key}.stages[{i}].mask", st.mask, "only a join stage (one that several "
                                                         "stages send to) has a mask")
        if self.model_file is None and any(st.model is None for st in self.stages):
            fail(f"{key}.model_file", None, "a stage without `model` is a cut of model_file")
        if self.hop not in HOPS:
            fail(f"{key}.hop", self.hop, f"one of {', '.join(HOPS)}")
        check_range(f"{key}.port", self.port, 1024,
                    65535 - (LEAN_PORT_OFFSET if self.hop == "lean" else 0))
        if not 0 < self.ready_timeout_s <= 3600:
            fail(f"{key}.ready_timeout_s", self.ready_timeout_s, "must be in (0, 3600]")

    def check_against(self, topo: Topology, key: str = "pipeline") -> None:
        """Nodes exist, cuts are valid cuts of the model, the chain carries what it needs."""
        from harness.pipeline.partition import check_cut, load_model
        from harness.pipeline.placement import place

        nodes = {n.name for n in topo.nodes}
        for i, s in enumerate(self.stages):
            if s.role is None and s.node not in nodes:
                fail(f"{key}.stages[{i}].node", s.node, "unknown node")
        self.placement = place(self.stages, topo, key)
        model = path = None
        if self.model_file is not None:
            path = resolve(self.model_file, f"{key}.model_file")
            try:
                model = load_model(path)
            except ConfigError as e:
                raise ConfigError(f"{key}.model_file={self.model_file!r}: {e}") from None
        for i, s in enumerate(self.stages):
            if s.model is None:
                assert model is not None and path is not None
                try:
                    check_cut(model, s.inputs, s.outputs, s.name, path.name)
                except ConfigError as e:
                    raise ConfigError(f"{key}.stages[{i}]: {e}") from None
            else:
                check_model(resolve(s.model, f"{key}.stages[{i}].model"), s,
                            f"{key}.stages[{i}]")
        self._check_joins(key)
        top = max(self.port_of(s.name) for s in self.stages if s.role is None) \
            if any(s.role is None for s in self.stages) else self.port
        if top + (LEAN_PORT_OFFSET if self.hop == "lean" else 0) > 65535:
            fail(f"{key}.port", self.port, f"its stages need ports up to {top}"
                 + (f" and {top + LEAN_PORT_OFFSET} for the lean hop" if self.hop == "lean"
                    else ""))
        if self.output not in self.stages[-1].outputs and self.stages[-1].model is None:
            fail(f"{key}.output", self.output, f"not an output of the last stage "
                                               f"{self.stages[-1].name}")
        self.carries()  # raises if a stage needs a tensor nothing upstream has

    def port_of(self, stage: str) -> int:
        """Where a stage listens: the pipeline's port, + n for the nth stage on its node."""
        names = [s.name for s in self.stages]
        i = names.index(stage)
        node = self.stages[i].node
        return self.port + sum(1 for s in self.stages[:i] if s.node == node and s.role is None)

    def spare_port(self, node: str, taken=()) -> int:
        """A port on `node` that no stage of the pipeline listens on, nor any in `taken`
        (for a technique's own instances there: a replica, an exit, a fusion stage)."""
        used = {self.port_of(s.name) for s in self.stages if s.node == node} | set(taken)
        port = self.port
        while port in used:
            port += 1
        return port

    def next_index(self, i: int) -> int | None:
        """The stage stage `i` sends to (None: the last stage answers)."""
        nxt = self.stages[i].next
        if nxt is not None:
            return [s.name for s in self.stages].index(nxt)
        return i + 1 if i + 1 < len(self.stages) else None

    def upstream(self, i: int) -> list[int]:
        return [j for j in range(len(self.stages)) if self.next_index(j) == i]

    def joins(self) -> list[int]:
        """Stages several stages send to."""
        return [i for i in range(len(self.stages)) if len(self.upstream(i)) > 1]

    def entries(self) -> list[int]:
        """Stages no stage sends to: where sensors feed the pipeline."""
        return [i for i in range(len(self.stages)) if not self.upstream(i)]

    def entry_for(self, inputs: tuple[str, ...] | list[str]) -> int | None:
        """The entry stage a sensor sending `inputs` feeds (None: none takes them)."""
        carries = self.carries()
        return next((i for i in self.entries() if set(inputs) <= set(carries[i])), None)

    def _check_joins(self, key: str) -> None:
        """Each input of a join comes from exactly one branch: the stage sending it there;
        the join is the last stage (it answers every branch; a stage after it would run
        once per branch); other stages take only what the stage before them gives."""
        joins = self.joins()
        for j in joins:
            if j != len(self.stages) - 1:
                fail(f"{key}.stages[{j}].name", self.stages[j].name,
                     "a join stage must be the last stage")
        for i, st in enumerate(self.stages):
            ups = self.upstream(i)
            if joins and len(ups) == 1:
                missing = [t for t in st.inputs if t not in self.stages[ups[0]].outputs]
                if missing:
                    fail(f"{key}.stages[{i}].inputs", missing,
                         f"not outputs of {self.stages[ups[0]].name}, the stage sending to it "
                         "(in a pipeline with a join, nothing rides along)")
        for j in joins:
            st = self.stages[j]
            for t in st.inputs:
                senders = [self.stages[u].name for u in self.upstream(j)
                           if t in self.stages[u].outputs]
                if len(senders) != 1:
                    fail(f"{key}.stages[{j}].inputs", t,
                         f"join stage {st.name} needs it from exactly one of the stages "
                         f"sending to it ({senders or 'none'} produce it)")

    def carries(self) -> list[list[str]]:
        """For each stage, the tensors it receives: its inputs plus what later stages need
        (in a pipeline with a join: its inputs only; nothing rides along a branch)."""
        if self.joins():
            return [list(s.inputs) for s in self.stages]
        need: list[list[str]] = []
        later: list[str] = []
        for s in reversed(self.stages):
            produced = set(s.outputs)
            carry = list(dict.fromkeys(s.inputs + [t for t in later if t not in produced]))
            need.append(carry)
            later = carry
        need.reverse()
        return need

    @property
    def fleet(self) -> bool:
        """Some stage runs on every node of a role (one instance per device, say)."""
        return any(s.role is not None for s in self.stages)

    def n_placed(self) -> int:
        """Instances the pipeline itself places (what a technique adds are replicas)."""
        return self.placement.n_instances if self.placement else len(self.stages)



def check_model(path: Path, stage: StageSpec, key: str) -> None:
    """A ready partition file takes the stage's inputs (and its mask) and gives its outputs."""
    from harness.pipeline.sessions import load_session

    try:
        sess = load_session(path)
    except Exception as e:  # onnxruntime's errors have no common base
        raise ConfigError(f"{key}.model={stage.model!r}: not a loadable ONNX model "
                          f"({str(e).splitlines()[0][:120]})") from None
    ins = [x.name for x in sess.get_inputs()]
    outs = [x.name for x in sess.get_outputs()]
    if stage.mask is not None and stage.mask not in ins:
        fail(f"{key}.mask", stage.mask, f"not an input of {path.name} (inputs: {ins})")
    want = list(stage.inputs) + ([stage.mask] if stage.mask else [])
    if stage.inputs and sorted(want) != sorted(ins):
        fail(f"{key}.inputs", stage.inputs, f"{path.name} takes {ins}")
    if stage.outputs and not set(stage.outputs) <= set(outs):
        fail(f"{key}.outputs", stage.outputs, f"{path.name} gives {outs}")


def resolve(path: str, key: str) -> Path:
    """Model paths are relative to the repository (where conf/ is), or absolute."""
    p = Path(path)
    if not p.is_absolute():
        p = REPO / p
    if not p.is_file():
        raise ConfigError(f"{key}={path!r}: no such model file")
    return p
