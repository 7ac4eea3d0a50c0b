"""From a composed Hydra config to a validated `Experiment`, or a one-line ConfigError.

Nothing here touches the network: every check a config can fail runs first.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from harness.core.config import (
    MODES,
    ConfigError,
    FidelityConfig,
    NetworkConfig,
    ResultsConfig,
    RunConfig,
    check_finite,
    check_type,
    fail,
    target_of,
)
from harness.core.config import from_dict as to_dataclass
from harness.core.paths import CONF_DIR
from harness.emulation.topology import Topology
from harness.faults.schedule import FaultsConfig
from harness.hosts.config import HostsConfig
from harness.measure.metrics.canary import MeasureConfig
from harness.pipeline.config import PipelineConfig
from harness.pipeline.plan import PipelinePlan, plan_pipeline
from harness.workload.replay import entry_error
from harness.workload.schedule import WorkloadConfig

# `${div:${run.duration_s},3}`: fault times as a fraction of the run. Registered here,
# where configs are composed, so code inside nodes needs no omegaconf.
OmegaConf.register_new_resolver("div", lambda a, b: float(a) / float(b), replace=True)
OmegaConf.register_new_resolver("multiply", lambda a, b: float(a) * float(b), replace=True)
# `${hx_pid:}` in run and sweep directory names: two runs started in the same second (a
# bench beside a sweep, two users) got the same directory and mixed their requests.
OmegaConf.register_new_resolver("hx_pid", lambda: str(os.getpid()), replace=True)


@dataclass
class Experiment:
    mode: str
    seed: int
    topology: Topology
    topology_name: str
    network: NetworkConfig
    faults: FaultsConfig
    faults_name: str
    backend: dict[str, Any]  # `_target_` + kwargs, instantiated when the run starts
    shaper: dict[str, Any]  # `_target_` + kwargs, instantiated when the run starts
    run: RunConfig
    fidelity: FidelityConfig
    config: dict[str, Any]  # the whole resolved config, for summary.json
    workload: WorkloadConfig | None = None  # None: emulation and faults only
    pipeline: PipelineConfig | None = None  # as written
    plan: PipelinePlan | None = None  # the pipeline on this topology (harness.pipeline.plan)
    technique: Any = None  # a harness.techniques.base.Technique
    technique_name: str = "baseline"
    results: ResultsConfig = field(default_factory=ResultsConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    hosts: HostsConfig = field(default_factory=HostsConfig)

    @property
    def config_hash(self) -> str:
        blob = json.dumps(self.config, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _call_target(group: str, node: dict[str, Any]) -> Any:
    fn = target_of(group, node)
    node.pop("_target_")
    try:  # an unknown key named with its value, as every other config error is
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    if params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        for k, v in node.items():
            if k not in params:
                fail(f"{group}.{k}", v, f"unknown key (known: {', '.join(sorted(params))})")
    if params:
        try:
            inspect.signature(fn).bind(**node)
        except TypeError as e:  # a required key missing
            raise ConfigError(f"{group}: {e}") from None
    for k, tp in _scalar_hints(fn).items():
        if k in node:
            node[k] = check_type(tp, node[k], f"{group}.{k}")
    return fn(**node)  # a TypeError raised in there is a bug, not bad input


def _scalar_hints(fn: Any) -> dict[str, Any]:
    """A plug-in's parameters annotated as a number or a flag (or None): checked as a
    structured config's fields are, so a string never meets a plug-in's own `<`."""
    try:
        hints = typing.get_type_hints(fn.__init__ if inspect.isclass(fn) else fn)
    except (NameError, TypeError):
        return {}
    out = {}
    for k, tp in hints.items():
        union = typing.get_origin(tp) in (typing.Union, types.UnionType)
        kinds = set(typing.get_args(tp)) - {type(None)} if union else {tp}
        if k != "return" and kinds and kinds <= {int, float, bool}:
            out[k] = tp
    return out


def plugin(group: str, node: Any) -> dict[str, Any]:
    """A plug-in's config (`_target_` + kwargs), checked to import; built when the run starts
    (building may probe the kernel)."""
    node = dict(node or {})
    target_of(group, node)
    return node


def sensors_of(workload: WorkloadConfig, topo: Topology) -> list[str]:
    return workload.sensors or [n.name for n in topo.nodes if n.role == "sensor"]


def build_topology(node: dict[str, Any]) -> Topology:
    topo = _call_target("topology", dict(node))
    if not isinstance(topo, Topology):
        fail("topology._target_", node.get("_target_"), "did not return a Topology")
    topo.validate("topology")
    return topo


def load_experiment(cfg: DictConfig, choices: dict[str, str] | None = None) -> Experiment:
    raw: dict[str, Any] = {}
    for k in cfg:
        if k == "hydra":  # Hydra's own settings are not the experiment's
            continue
        try:  # a resolver's own exception reaches us as OmegaConf's, wrapped
            v = cfg[k]
            raw[str(k)] = OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
        except OmegaConfBaseException as e:  # interpolation errors name their key
            raise ConfigError(f"{k}: {str(e).splitlines()[0]}") from None
    check_finite("", raw)  # NaN passes every range check; inf is no duration or rate
    choices = choices or {}
    known = {"mode", "seed", "run", "fidelity", "topology", "network", "shaper", "faults",
             "backend", "workload", "pipeline", "technique", "results", "measure", "hosts"}
    for k in raw:
        if k not in known:
            fail(k, raw[k], f"unknown key (known: {', '.join(sorted(known))})")
    mode = raw.get("mode", "run")
    if mode not in MODES:
        fail("mode", mode, f"one of {', '.join(MODES)}")
    seed = raw.get("seed", 1)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        fail("seed", seed, "must be a non-negative integer")
    if isinstance(raw.get("network"), dict) and "shaper" in raw["network"]:
        fail("network.shaper", raw["network"]["shaper"],
             "the shaper is its own config group now: shaper=auto|netem|userspace")
    network = to_dataclass(NetworkConfig, raw.get("network"), "network")
    topology = build_topology(raw.get("topology") or {})
    for i, link in enumerate(topology.links):
        jitter = link.shaped_props(network.defaults())
        if (jitter.jitter_ms or 0) > (jitter.delay_ms or 0):
            fail(f"topology.links[{i}].jitter_ms", jitter.jitter_ms, "must be <= delay_ms")
    faults = FaultsConfig.parse(raw.get("faults"), "faults")
    faults.check_against(topology)
    backend = plugin("backend", raw.get("backend"))
    shaper = plugin("shaper", raw.get("shaper")
                    or {"_target_": "harness.emulation.shapers.auto.auto"})
    fidelity = to_dataclass(FidelityConfig, raw.get("fidelity"), "fidelity")
    links = {lk.name for lk in topology.links}
    for i, name in enumerate(fidelity.links):
        if name not in links:
            fail(f"fidelity.links[{i}]", name, f"unknown link (links: {', '.join(sorted(links))})")
    measure = to_dataclass(MeasureConfig, raw.get("measure"), "measure")
    workload = pipeline = plan = technique = None
    if measure.canary_hz and not raw.get("workload"):
        fail("measure.canary_hz", measure.canary_hz, "needs a workload (e.g. workload=digits)")
    if raw.get("workload"):
        workload = to_dataclass(WorkloadConfig, raw["workload"], "workload")
        for i, s in enumerate(workload.sensors):
            if s not in {n.name for n in topology.nodes}:
                fail(f"workload.sensors[{i}]", s, "unknown node")
        if not sensors_of(workload, topology):
            fail("workload.sensors", [], f"topology {topology.name} has no sensor node")
        pipeline = to_dataclass(PipelineConfig, raw.get("pipeline"), "pipeline")
        plan = plan_pipeline(pipeline, topology)
        technique = _call_target("technique", dict(raw.get("technique") or {}))
        if plan.fleet and not technique.fleet:
            i, s = next((i, s) for i, s in enumerate(plan.stages) if s.role)
            fail(f"pipeline.stages[{i}].role", s.role, f"technique "
                 f"{choices.get('technique', technique.name)} re-routes one instance per "
                 f"stage; stages placed by role run with technique=baseline")
        technique.bind(network.defaults(), workload.slo_ms)
        if plan.joins() and not technique.branches:
            j = plan.joins()[0]
            fail("technique", choices.get("technique", technique.name),
                 f"re-routes a chain, but stage {plan.stages[j].name} joins branches: "
                 "such a pipeline runs with technique=baseline or sensing_redundancy")
        technique.check(plan, topology)
        measure.check_pipeline("measure", plan, bool(technique.observations))
        error = entry_error(workload.library(), plan, sensors_of(workload, topology))
        if error:
            fail("workload.samples", workload.samples.get("_target_"), error)
    faults.check_sensors(sensors_of(workload, topology) if workload else None)
    hosts = to_dataclass(HostsConfig, raw.get("hosts"), "hosts")
    hosts.check(topology, raw)
    return Experiment(
        mode=mode,
        seed=seed,
        topology=topology,
        topology_name=choices.get("topology", topology.name),
        network=network,
        faults=faults,
        faults_name=choices.get("faults", "custom"),
        backend=backend,
        shaper=shaper,
        run=to_dataclass(RunConfig, raw.get("run"), "run"),
        fidelity=fidelity,
        config=raw,
        workload=workload,
        pipeline=pipeline,
        plan=plan,
        technique=technique,
        technique_name=choices.get("technique", "baseline"),
        results=to_dataclass(ResultsConfig, raw.get("results"), "results"),
        measure=measure,
        hosts=hosts,
    )


def compose_config(*overrides: str) -> DictConfig:
    """Hydra's part: conf/ composed with `overrides` (Hydra's own errors propagate)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def compose_experiment(*overrides: str) -> Experiment:
    """The experiment `python -m harness <overrides>` would run (for the bench and tests)."""
    cfg = compose_config(*overrides)
    return load_experiment(cfg, dict(cfg.hydra.runtime.choices))


def check_overrides(overrides: list[str]) -> Experiment:
    """compose_experiment for user input, where bad input is a one-line ConfigError naming
    a key and value. Hydra's own errors (a malformed override, an unknown option,
    `workload=null`) do not always say which override they mean: the override that fails
    the same way on its own is named. Any other exception is a bug, and propagates."""
    try:
        cfg = compose_config(*overrides)
    except Exception as e:
        if not rejects_input(e):
            raise
        why = " ".join(str(e).split())  # Hydra's and OmegaConf's errors span lines
        keys = [o.partition("=")[0].lstrip("+~") for o in overrides]
        if any(f"'{k}'" in why or f"{k}=" in why or f"{k}/" in why for k in keys):
            raise ConfigError(why) from None  # Hydra named it already
        culprit = next((o for o in overrides if _hydra_rejects(o)), None)
        raise ConfigError(f"{culprit}: {why}" if culprit else why) from None
    return load_experiment(cfg, dict(cfg.hydra.runtime.choices))


def rejects_input(e: BaseException) -> bool:
    """Whether Hydra or OmegaConf raised `e` about the overrides: their own error types, or
    a ValueError raised by Hydra's code (`workload=null`: "Config group override must be
    a string or a list")."""
    if isinstance(e, HydraException | OmegaConfBaseException):
        return True
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = str(tb.tb_frame.f_globals.get("__name__", "")) if tb is not None else ""
    return isinstance(e, ValueError) and where.split(".")[0] in ("hydra", "omegaconf")


def _hydra_rejects(override: str) -> bool:
    try:
        compose_config(override)
    except Exception as e:
        if not rejects_input(e):
            raise
        return True
    return False
