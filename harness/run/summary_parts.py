"""The nested parts of summary.json, typed (the whole: `harness.run.summary.Summary`).

Each part is what one producer returns (its module named in the docstring); a key
it does not declare or a value of the wrong type fails validation (`extra="forbid"`,
strict types: no "1" for 1, no true for 1.0).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Part(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def d(description: str, default: Any = ...) -> Any:
    """A field with its one-line description; `default` given: it may be absent."""
    return Field(default, description=description)


class LatencyMs(Part):
    """Latency of answered requests, ms from the scheduled time (measure/metrics/outcomes)."""

    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    max: float | None


class LatenessMs(Part):
    """The load generator's lateness: sent minus scheduled, ms (null: nothing sent)."""

    p50: float | None
    p99: float | None
    max: float | None


class JoinedAccuracy(Part):
    """Answers that used one mix of a join stage's inputs."""

    n: int = d("answers with this mix")
    accuracy: float = d("correct / n")


class ReferenceJoin(Part):
    """The model in process for a join pipeline (measure/metrics/reference)."""

    by_joined: dict[str, float] = d(
        "accuracy on the whole test split for each mix of branches that may arrive")
    agreement: float | None = d(
        "share of answers equal to the model's in process for what arrived")


class RecoveryBreakdown(Part):
    """Recovery phases in ms, from the fault on; they add up to MTTR. Cold failover and
    reconfiguration: detection, detect_to_spawn, process_start, model_load,
    first_inference, ready, route_push, reroute; a re-partitioning merge: detection,
    decide, load, route_push, reroute (measure/metrics/resilience.breakdown_ms)."""

    detection_ms: float = d("fault to the technique's detection")
    detect_to_spawn_ms: float | None = d("detection to the replica's process spawned", None)
    process_start_ms: float | None = d("spawn to the stage starting to load", None)
    model_load_ms: float | None = d("loading the model", None)
    first_inference_ms: float | None = d("the warm-up inference", None)
    ready_ms: float | None = d("warm-up done to the ready file written", None)
    decide_ms: float | None = d("choosing the re-partitioning move", None)
    load_ms: float | None = d("the neighbour loading the merged partition", None)
    route_push_ms: float | None = d("pushing the new route upstream", None)
    reroute_ms: float | None = d(
        "the rest of MTTR: reconnect and the first request answered; absent at MTTR 0",
        None)


class Cut(Part):
    """A merged partition's boundary tensors."""

    inputs: list[str]
    outputs: list[str]


class Candidate(Part):
    """One move the controller could make (techniques/reconfiguration/repartition)."""

    kind: Literal["as_is", "merge_down", "merge_up"]
    node: str
    fits: bool = d("the node's memory takes it")
    predicted_ms: float | None = d("predicted end-to-end latency")
    need_mb: float = d("memory the move needs")
    free_mb: float | None = d("the node's free memory; null: unlimited")


class Reconfiguration(Part):
    """The re-partitioning made (techniques/reconfiguration: its `repartition` event)."""

    mode: Literal["replace", "repartition"] = d("technique.mode")
    stage: str | None = d("the lost stage")
    move: Literal["as_is", "merge_down", "merge_up"] | None = d("the kind of move made")
    node: str | None = d("where the stage went")
    into: str | None = d("the stage that took the lost one's partition (a merge)")
    cut: Cut | None = d("the merged partition's inputs and outputs (a merge)")
    predicted_ms: float | None = d("the move's predicted end-to-end latency")
    decide_ms: float | None = d("time taken to decide")
    candidates: list[Candidate] = d("every move considered")


class StageRssMb(Part):
    """Each stage process's peak resident set, VmHWM, MiB (measure/live/memory)."""

    p50: float
    max: float
    n: int = d("stage processes read")
    ready_p50: float | None = d("median RSS once ready (before the load)")
    shared_file_p50: float = d("median file-backed (shared library) pages")


class StagePssMb(Part):
    """Proportional set size, MiB: shared pages divided among the processes mapping them."""

    p50: float
    max: float
    n: int
    total: float = d("what all stages take from this machine")


class StageUssMb(Part):
    """Unique set size, MiB: private pages, the cost of one more stage."""

    p50: float
    max: float
    n: int


class HelperCost(Part):
    """A kind of helper process: how many, their CPU seconds since each started, their
    peak resident sets summed (MiB)."""

    n: int
    cpu_s: float
    peak_rss_mb: float


class Footprint(Part):
    """The harness's own cost (harness/measure/live/footprint.py)."""

    harness_cpu_s: float = d("CPU seconds of the harness process, network up to run end")
    harness_peak_rss_mb: float = d("its peak resident set, MiB")
    delay_line: HelperCost | None = d("the userspace shaper's delay lines", None)
    zygote: HelperCost | None = d("the process node processes fork from", None)


class WallClock(Part):
    """Unix time of the run (a sweep tells from it which jobs ran at once)."""

    start: float
    end: float | None = d("null only while the run is being written")


class FidelityMeasured(Part):
    """fidelity.enabled=true: the links measured (fidelity.json has the figures)."""

    links: int = d("links measured")
    out_of_tolerance: list[str] = d("links outside tolerance")


class Provenance(Part):
    """Where the result came from: code, machine, software (core/provenance)."""

    git_commit: str | None
    git_dirty: bool | None = d("the tree had uncommitted changes")
    host: str
    kernel: str
    cpu_model: str
    cores: int | None
    python: str
    packages: dict[str, str | None] = d("versions of the packages that shape the numbers")
    backend: str | None = d("the backend's _target_")
    shaper: str
    fidelity: str | FidelityMeasured = d(
        "the measured fidelity, or why it was not measured")


class NodeInfo(Part):
    ip: str
    role: str


class LinkInfo(Part):
    """A link's ends and its configured properties (core/config.LinkProps)."""

    a: str
    b: str
    a_dev: str
    b_dev: str
    bw_mbit: float | None
    delay_ms: float | None
    jitter_ms: float | None
    loss_pct: float | None
    queue_pkts: int | None
    real: bool = d("the hosts' network is the link: carried, never shaped (its properties "
                   "are not applied; fidelity.json has what it did)", False)


class Network(Part):
    """The network that came up (emulation/network.Emulation.describe)."""

    shaper: str
    tcp_cc: str = d("TCP congestion control of the nodes")
    prefix: str
    nodes: dict[str, NodeInfo]
    links: dict[str, LinkInfo]


class Timings(Part):
    """Seconds to bring the network up and down (emulation/network, run/lifecycle)."""

    nodes_s: float
    links_s: float
    up_s: float
    teardown_s: float | None = d("absent when the teardown did not finish", None)


class LinkCounters(Part):
    """One direction of a link, as the delay line counts it (emulation/shapers/delayline)."""

    rx_frames: int
    rx_bytes: int
    fwd_frames: int
    fwd_bytes: int
    loss_frames: int
    loss_bytes: int
    down_frames: int = d("dropped while the link was down")
    down_bytes: int
    err_frames: int = d("send failures")
    sock_drops: int = d("kernel drops on the receiving socket")
    queued: int = d("frames in the delay queue when read")


class FaultAction(Part):
    """One scheduled action as written in the config; the keys beyond these four are its
    kind's parameters (harness/faults/kinds validates them)."""

    model_config = ConfigDict(extra="allow", strict=True)

    at_s: float
    action: str
    target: str | None
    for_s: float | None


Counters = dict[str, dict[Literal["fwd", "rev"], LinkCounters]]
