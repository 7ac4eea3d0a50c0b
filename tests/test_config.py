"""Every config group composes and validates; bad input is one line, exit 2, no change."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.config import ConfigError
from tests.helpers import CONF, compose_cfg, exp_for, harness_cmd, machine_state, root_only

GROUPS = ["topology", "network", "faults", "backend"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONF) / group).glob("*.yaml"))


@pytest.mark.parametrize("topology", options("topology"))
def test_every_topology_builds(topology: str) -> None:
    exp = exp_for(f"topology={topology}")
    assert exp.topology.nodes and exp.topology.links
    ips = exp.topology.addresses()
    assert len(set(ips.values())) == len(ips)


@pytest.mark.parametrize("network", options("network"))
def test_every_network_validates(network: str) -> None:
    exp = exp_for(f"network={network}")
    assert exp.network.congestion_control() in ("cubic", "reno", exp.network.tcp_cc)


@pytest.mark.parametrize("shaper", options("shaper"))
def test_every_shaper_target_resolves(shaper: str) -> None:
    from hydra.utils import get_method

    exp = exp_for(f"shaper={shaper}")
    assert callable(get_method(exp.shaper["_target_"]))


@pytest.mark.parametrize("faults", options("faults"))
def test_every_fault_schedule_fits_some_topology(faults: str) -> None:
    def fits(topology: str) -> bool:
        for extra in ([], ["workload=digits"]):  # sensor faults need the sensors running
            try:
                exp_for(f"topology={topology}", f"faults={faults}", *extra)
                return True
            except ConfigError:
                pass
        return False

    assert any(fits(t) for t in options("topology")), (  # stops at the first that fits
        f"faults={faults} references nodes of no shipped topology")


def test_backend_target_resolves() -> None:
    from hydra.utils import get_class

    from harness.emulation.backends.base import Backend

    for b in options("backend"):
        exp = exp_for(f"backend={b}")
        assert issubclass(get_class(exp.backend["_target_"]), Backend)


def test_hydra_dirs_under_results() -> None:
    from omegaconf import OmegaConf

    hydra = OmegaConf.to_container(compose_cfg().hydra, resolve=False)
    assert hydra["run"]["dir"].startswith("results/runs/")
    assert hydra["sweep"]["dir"].startswith("results/sweeps/")


def test_link_overrides_network_default() -> None:
    exp = exp_for("topology=device_edge_cloud", "network.delay_ms=3",
                  "topology.edge_cloud_link.delay_ms=20")
    base = exp.network.defaults()
    assert exp.topology.link("e1-c1").props.over(base).delay_ms == 20
    assert exp.topology.link("d1-e1").props.over(base).delay_ms == 3


@pytest.mark.parametrize("overrides,key", [
    (["network.bw_mbit=-5"], "network.bw_mbit"),
    (["network.loss_pct=150"], "network.loss_pct"),
    (["+network.shaper=userspace"], "network.shaper"),
    (["shaper._target_=harness.nowhere.Shaper"], "shaper._target_"),
    (["fidelity.links=[d1-e1]"], "fidelity.links[0]"),
    (["fidelity.delay_tol_ms=-1"], "fidelity.delay_tol_ms"),
    (["fidelity.bw_tol_pct=-5"], "fidelity.bw_tol_pct"),
    (["network.delay_ms=1", "network.jitter_ms=2"], "network.jitter_ms"),
    (["topology=custom_example", "topology.links.1.b=nowhere"], "topology.links[1].b"),
    (["topology=device_edge_cloud", "faults=pair_crash"], "faults.actions[0].target"),
    (["topology=device_edge_cloud", "topology.n_edges=1"], "topology.n_edges"),
    (["mode=walk"], "mode"),
    (["run.duration_s=-1"], "run.duration_s"),
    (["results.readable_by=world"], "results.readable_by"),
    (["results.readable_by=0644"], "results.readable_by"),
])
def test_bad_input_names_the_key(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError) as e:
        exp_for(*overrides)
    assert str(e.value).startswith(key), str(e.value)


BAD_CLI = [
    ["network.bw_mbit=-5"],
    ["network.loss_pct=101"],
    ["topology=custom_example", "topology.links.0.a=ghost"],
    ["topology=device_edge_cloud", "faults=pair_crash"],
    ["shaper=bogus"],
    ["fidelity.links=[nolink]"],
    ["topology=nope"],
    ["network.no_such_key=1"],
    ["results.readable_by=everyone"],
]


@root_only
@pytest.mark.needs_root
@pytest.mark.parametrize("overrides", BAD_CLI)
def test_bad_input_cli_exit_2_one_line_no_change(overrides: list[str], tmp_path: Path) -> None:
    before = machine_state()
    runs = Path(CONF).parent / "results" / "runs"
    runs_before = set(runs.iterdir()) if runs.is_dir() else set()
    p = harness_cmd(*overrides)
    assert p.returncode == 2, p.stderr
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("config error:")
    key = overrides[-1].split("=")[0]
    assert key.split(".")[-1] in lines[0] or overrides[-1].split("=")[1] in lines[0]
    assert machine_state() == before
    assert (set(runs.iterdir()) if runs.is_dir() else set()) == runs_before


@root_only
@pytest.mark.needs_root
def test_netem_requested_without_netem_is_a_config_error() -> None:
    from harness.emulation.shapers.netem import netem_available

    if netem_available()[0]:
        pytest.skip("this kernel has netem; the error path cannot be exercised")
    p = harness_cmd("shaper=netem")
    assert p.returncode == 2
    assert "shaper=netem" in p.stderr


def test_every_bench_row_validates() -> None:
    """`make bench` runs these rows after minutes of other sections: a typo in one must
    fail here, not there."""
    from harness.bench import har as har_bench
    from harness.bench import pipeline as pipeline_bench

    rows = [(["topology=device_edge_cloud", "workload=digits", *o], f)
            for _, o, faults in pipeline_bench.FULL + pipeline_bench.GATE_MATRIX
            for f in [[f"faults={x}"] for x in faults]]
    rows += [([*har_bench.HAR, *o], har_bench.FAULTS[f])
             for _, o, faults in har_bench.MATRIX for f in faults]
    for overrides, faults in rows:
        exp_for(*overrides, *faults)
    # the default bench's rows are rows of the full matrix (a typo would drop one unseen)
    default = {(label, f) for label, _, faults in pipeline_bench.MATRIX for f in faults}
    assert default == pipeline_bench.DEFAULT_ROWS


@pytest.mark.parametrize("overrides", [
    ["topology=device_edge_cloud", "workload=digits", "technique=adaptive",
     "technique.actions=[failover,skip,repartition]"],
    ["topology=fleet", "pipeline=fleet", "workload=digits", "technique=baseline"],
    ["topology=device_edge_cloud", "workload=har", "pipeline=har",
     "technique=sensing_redundancy"],
], ids=["adaptive", "fleet", "har"])
def test_planning_leaves_the_config_as_the_user_wrote_it(overrides: list[str]) -> None:
    """The pipeline's placement, ports and routes are a value of their own (the plan),
    never written back onto the config: the config stays what the user wrote, through
    planning and through the checks the technique and the measurements run on the plan."""
    import copy
    from dataclasses import FrozenInstanceError

    from harness.core.config import from_dict
    from harness.pipeline.config import PipelineConfig
    from harness.pipeline.plan import plan_pipeline

    exp = exp_for(*overrides)

    def state(pipe: PipelineConfig) -> tuple:
        return copy.deepcopy(vars(pipe)), [copy.deepcopy(vars(s)) for s in pipe.stages]

    written = from_dict(PipelineConfig, exp.config["pipeline"], "pipeline")
    assert state(exp.pipeline) == state(written)  # after the whole experiment's checks
    before = state(written)
    plan = plan_pipeline(written, exp.topology)
    assert state(written) == before and plan.config is written
    assert plan.n_placed() == exp.plan.n_placed() and plan.ports == exp.plan.ports
    with pytest.raises(FrozenInstanceError):
        plan.ports = ()  # type: ignore[misc]
