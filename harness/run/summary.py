"""summary.json has a schema: every field typed and described, assembled and checked here.

The run's phases and the modules they call produce their parts as dicts; `assemble`
merges them (a key two parts both set is a defect) and `checked` validates the whole
against `Summary`: a key no model declares, or a value of the wrong type, does not
validate. A run never loses its results to this: a summary that does not validate is
written with its raw fields and a warning (`SCHEMA_WARNING`) in `warnings`, logged as
an error; the tests validate strictly. The JSON Schema committed beside this module
(summary.schema.json) is generated from these models:

    python -m harness.run.summary          # writes it
    python -m harness.run.summary --check  # exit 1 if it differs from the models
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, ValidationError

from harness.core.files import SCHEMA_VERSION
from harness.measure.metrics.outcomes import clean_json
from harness.run.summary_hosts import HostClock, Hosts
from harness.run.summary_parts import (
    Counters,
    FaultAction,
    Footprint,
    JoinedAccuracy,
    LatencyMs,
    LatenessMs,
    Network,
    Part,
    Provenance,
    Reconfiguration,
    RecoveryBreakdown,
    ReferenceJoin,
    StagePssMb,
    StageRssMb,
    StageUssMb,
    Timings,
    WallClock,
    d,
)

SCHEMA_FILE = Path(__file__).with_name("summary.schema.json")
SCHEMA_WARNING = "summary.json does not match its schema"
Float = float | None


def a(description: str) -> Any:
    """A field only some runs have (a workload, a fault, a technique, the network up)."""
    return d(description, None)


class Summary(Part):
    """summary.json: one run's verdict, outcomes, resilience figures and overheads."""

    model_config = ConfigDict(extra="forbid", strict=True, title="summary.json")

    # -- always: what ran and the verdict
    schema_version: Literal[SCHEMA_VERSION] = d("version of this structure")  # type: ignore[valid-type]
    verdict: Literal["VALID", "INVALID"] = d("VALID only when nothing went wrong")
    verdict_reasons: list[str] = d("why the run is INVALID; empty when VALID")
    warnings: list[str] = d("what the figures should be read with (not invalidating)")
    mode: Literal["run", "cli"] = d("run, or cli (interactive)")
    topology: str = d("the topology's name")
    faults: str = d("the fault schedule's name")
    faults_schedule: list[FaultAction] = d("the scheduled fault actions, as configured")
    backend: str | None = d("the node backend's _target_")
    seed: int = d("the run's seed")
    duration_s: float = d("the run's length, s")
    shaper: str = d("the link shaper's name")
    technique: str | None = d("the resilience technique (null without a workload)")
    workload: str | None = d("the workload's model (null without a workload)")
    slo_ms: float | None = d("the latency SLO, ms (null without a workload)")
    config_hash: str = d("hash of the resolved config")
    config: dict[str, Any] = d("the resolved config")
    wall_clock: WallClock = d("Unix time of the run's start and end")
    provenance: Provenance = d("git commit, host, kernel, CPU, versions, fidelity")
    # -- once the network is up
    prefix: str = a("the run's prefix of namespaces, links and cgroups")
    network: Network = a("nodes with addresses, links with configured properties")
    timings: Timings = a("nodes_s, links_s, up_s, teardown_s")
    link_stats: Counters = a("delay-line counters per link and direction ({} with netem)")
    footprint: Footprint = a("the harness's own cost from network up to the run's end: "
                             "its process, its delay lines, its zygote (one host only)")
    hosts: Hosts = a("across hosts: each host, each node's host and why, the links "
                     "carried between hosts, their MTU")
    clock: dict[str, HostClock] = a("across hosts: each host's clock against the "
                                    "coordinator's, before and after the run")
    # -- with a workload: outcomes of the scheduled requests
    n_scheduled: int = a("requests scheduled (= n_ok + n_late + n_failed + n_lost)")
    n_ok: int = a("answered within the SLO")
    n_late: int = a("answered after the SLO")
    n_failed: int = a("an error came back")
    n_lost: int = a("no answer by the end plus the grace period")
    n_answered: int = a("n_ok + n_late")
    availability: Float = a("n_ok / n_scheduled")
    latency_ms: LatencyMs = a("p50, p90, p95, p99, max of answered requests")
    accuracy: Float = a("correct / answered")
    reference_accuracy: Float = a("the whole model in process on the same answered frames")
    accuracy_by_joined: dict[str, JoinedAccuracy] = a(
        "a join stage: accuracy for each mix of inputs that arrived")
    reference_join: ReferenceJoin | None = a(
        "a join stage: the model in process for each mix of branches, and agreement")
    lateness_ms: LatenessMs = a("p50, p99, max of sent minus scheduled")
    providers: dict[str, list[str]] = a("execution providers per stage instance")
    # -- with a workload: what the fault did and how fast the technique got over it
    fault_at_s: Float = a("when the first fault began: its action's start")
    fault_in_effect_s: Float = a("fault_at_s plus the time applying it took")
    mttd_ms: Float = a("fault to the technique's first detect event")
    mttr_ms: Float = a("the outage: fault to the first ok answer after the first loss")
    mttr_source: Literal["requests", "canary"] | None = a("the stream MTTR was read off")
    mttr_resolution_ms: Float = a("the spacing of that stream")
    mttr_requests_ms: Float = a("the workload's own MTTR, beside a canary's")
    first_loss_ms: Float = a("fault to the first request it cost")
    unavailable_ms: Float = a("share of post-fault requests not ok x post-fault time")
    availability_after_fault: Float = a("ok / scheduled after the fault")
    availability_after_recovery: Float = a("ok / scheduled after fault + MTTR")
    accuracy_after_fault: Float = a("correct / answered after the fault")
    degraded_after_fault: Float = a("share of post-fault answers over a fallback")
    recovery_breakdown_ms: RecoveryBreakdown | None = a(
        "the technique's recovery phases; they add up to MTTR")
    reconfiguration: Reconfiguration = a("technique.mode=repartition: the move made")
    # -- with a workload: overheads to set against the baseline of the same seed
    cpu_s: float = a("CPU seconds of the stage nodes' cgroups")
    cpu_s_by_node: dict[str, float] = a("the same per node")
    bytes_sent: int | None = a("bytes forwarded on emulated links (null with netem)")
    replicas: int = a("stage processes beyond those the pipeline places")
    stage_instances: int = a("stage processes started")
    stages_ready_s: float = a("first stage launched to all ready")
    sensors_ready_s: float = a("sensors started and warmed up")
    stage_rss_mb: StageRssMb | None = a("peak resident set per stage process (VmHWM)")
    stage_pss_mb: StagePssMb | None = a("proportional set size per stage process")
    stage_uss_mb: StageUssMb | None = a("unique set size per stage process")


def assemble(*parts: dict) -> tuple[dict, list[str]]:
    """The summary from its parts, in order, and the keys more than one part set."""
    out: dict = {}
    twice = []
    for part in parts:
        twice += sorted(k for k in part if k in out)
        out.update(part)
    return out, [f"{k} set twice" for k in twice]


def problems(data: dict) -> list[str]:
    """Why `data` (JSON values) is not a summary; empty when it is."""
    try:
        Summary.model_validate(data)
    except ValidationError as e:
        return [f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
    return []


def checked(fields: dict, issues: list[str] | None = None) -> tuple[dict, list[str]]:
    """What summary.json holds: the fields as the model dumps them (absent stays absent),
    or, when they do not validate (or `issues` says the assembly went wrong), the raw
    fields with SCHEMA_WARNING in their warnings: no result is lost. And the problems."""
    data = json.loads(json.dumps(clean_json(fields), default=str))  # what is written
    found = list(issues or []) + problems(data)
    if not found:
        return (Summary.model_validate(data).model_dump(mode="json", exclude_unset=True),
                [])
    if not isinstance(data.get("warnings"), list):
        data["warnings"] = [] if data.get("warnings") is None else [str(data["warnings"])]
    data["warnings"].append(f"{SCHEMA_WARNING}: {'; '.join(found)}")
    return data, found


def _tidy(node: Any) -> Any:
    """Drop pydantic's per-property titles and defaults: a file has no defaults."""
    if isinstance(node, dict):
        out = {k: _tidy(v) for k, v in node.items() if k != "default"}
        if isinstance(node.get("properties"), dict):
            out["properties"] = {k: {kk: vv for kk, vv in _tidy(v).items() if kk != "title"}
                                 for k, v in node["properties"].items()}
        return out
    if isinstance(node, list):
        return [_tidy(v) for v in node]
    return node


def schema() -> dict:
    """The JSON Schema of summary.json, from `Summary`."""
    s = _tidy(Summary.model_json_schema())
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "summary.schema.json",
            "$comment": f"schema_version {SCHEMA_VERSION}; generated from harness/run/summary.py "
                        "by `python -m harness.run.summary`: do not edit by hand", **s}


def schema_text() -> str:
    return json.dumps(schema(), indent=2) + "\n"


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        same = SCHEMA_FILE.exists() and SCHEMA_FILE.read_text() == schema_text()
        print(f"{SCHEMA_FILE}: {'up to date' if same else 'differs from the models'}")
        return 0 if same else 1
    if argv:
        print("usage: python -m harness.run.summary [--check]", file=sys.stderr)
        return 2
    SCHEMA_FILE.write_text(schema_text())
    print(SCHEMA_FILE)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
