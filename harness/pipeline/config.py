"""The pipeline config: a model cut into stages at named tensors, each placed on a node.

Stages form a chain, each forwarding to the next the tensors it and later
stages need (e.g. the skip tensor `h` rides along from the head to the tail).
A stage may name a later stage as its `next` instead: several branches (one per
sensor modality, say) then meet at a join stage, which waits for each request's
tensors from all of them (graph.py). This is what the user wrote, checked on its
own; checked against the topology and the model it becomes a `PipelinePlan`
(plan.py), and it is never changed. Every check runs before the network exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.core.config import ConfigError, check_range, fail
from harness.core.paths import REPO
from harness.pipeline import graph
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
        joins = graph.joins(self.stages)
        if joins:
            for i, st in enumerate(self.stages):
                if st.role is not None:
                    fail(f"{key}.stages[{i}].role", st.role, "a pipeline with a join places "
                                                             "its stages by node")
        for i, st in enumerate(self.stages):
            if st.mask is not None and i not in joins:
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
