"""Fuzzed configuration (hypothesis): random overrides of every config group, valid and
invalid, through the check `python -m harness` runs before it touches the network
(`check_overrides`). Every case either validates or raises a one-line ConfigError
naming a key and its value; any other exception is a bug.

`make test` runs a slice (HX_FUZZ_EXAMPLES, default 60); `make fuzz` runs 1,050.
"""

from __future__ import annotations

import math
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.core.config import ConfigError
from harness.run.experiment import check_overrides
from tests.helpers import harness_cmd, machine_state, root_only

EXAMPLES = int(os.environ.get("HX_FUZZ_EXAMPLES", "60"))
GROUPS = {
    "topology": ["pair", "device_edge_cloud", "edge_mesh", "custom_example", "fleet"],
    "network": ["default", "lan", "wifi"],
    "shaper": ["auto", "netem", "userspace"],
    "faults": ["none", "edge_crash", "edge_crash_recover", "edge_hang", "edge_stress",
               "link_down", "bandwidth_collapse", "overload", "pair_crash", "pair_link_flap",
               "partition", "sensor_crash", "sensor_noise", "stage_kill", "thermal"],
    "workload": ["null", "digits"],
    "pipeline": ["device_edge_cloud", "device_edge", "edge_edge", "on_device", "fleet"],
    "technique": ["baseline", "failover", "structural", "reconfiguration",
                  "sensing_redundancy"],
}
KEYS = [
    "seed", "run.duration_s", "mode",
    "network.bw_mbit", "network.delay_ms", "network.jitter_ms", "network.loss_pct",
    "network.queue_pkts", "network.tcp_cc", "network.trace",
    "fidelity.enabled", "fidelity.probes", "fidelity.delay_tol_ms", "fidelity.attempts",
    "topology.link.delay_ms", "topology.link.bw_mbit", "topology.edge_cpu",
    "topology.edge_mem_mb", "topology.devices", "topology.edge_gpus", "topology.devices_per_edge",
    "topology.n_edges", "pipeline.stages.0.role",
    "workload.rate_hz", "workload.slo_ms", "workload.arrival", "workload.grace_s",
    "workload.timestamps_file", "workload.sensors", "workload.samples.occlusion",
    "workload.rate_schedule", "workload.start_delay_s",
    "pipeline.model_file", "pipeline.stages", "pipeline.hop", "pipeline.port",
    "technique.mode", "technique.replicas", "technique.health_period_ms",
    "technique.health_timeout_ms", "technique.attempt_timeout_ms", "technique.variant.middle",
    "technique.early_exit", "technique.hedge_ms", "technique.detector",
    "technique.idle_probe_ms", "technique.suspect_min_ms",
    "faults.actions", "results.readable_by",
]
ATOMS = st.one_of(
    st.integers(-10**6, 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda f: "nan" if math.isnan(f)
                                                      else str(f)),
    st.sampled_from(["null", "true", "false", "''", "e1", "e9", "h1", "d1-e1", "zz-top",
                     "models/digits/head.onnx", "models/nosuch.onnx", "/etc/passwd",
                     "README.md", "../shared/traces", "warm", "cold", "poisson", "recorded",
                     "passive", "lean", "grpc", "-1", "0", "1e9", "0.5", "101", "65000"]),
)
VALUES = st.one_of(
    ATOMS,
    st.lists(ATOMS, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]"),
    st.sampled_from([
        "{middle:e2}", "{middle:e1}", "{nosuch:e2}", "{middle:zz}",
        "[{at_s:1,action:crash,target:e1}]", "[{at_s:-1,action:crash,target:e1}]",
        "[{at_s:1,action:explode,target:e1}]", "[{at_s:1,action:crash,target:nosuch}]",
        "[{at_s:1,action:crash}]", "[{action:crash,target:e1}]",
        "[{at_s:1,action:link_down,target:d1-e1}]", "[{at_s:1,action:degrade,target:nope}]",
        "[{at_s:99999,action:crash,target:e1}]", "[{at_s:1,rate_hz:-5}]",
        "[{name:a,node:e1,model:nosuch.onnx}]",
    ]),
)
# values a user would plausibly write, so that a good share of cases validate and the
# checks between valid values (ranges, node names, combinations) are reached
PLAUSIBLE = {
    "seed": ["1", "7"], "run.duration_s": ["1", "5.5", "30"], "mode": ["run", "cli"],
    "network.bw_mbit": ["0", "10", "100"], "network.delay_ms": ["0", "1", "20"],
    "network.jitter_ms": ["0", "2"], "network.loss_pct": ["0", "1", "5"],
    "network.queue_pkts": ["100", "1000"], "network.tcp_cc": ["auto", "reno", "cubic"],
    "fidelity.enabled": ["true", "false"], "fidelity.probes": ["20", "50"],
    "topology.edge_cpu": ["0.5", "1"], "topology.edge_mem_mb": ["256", "1024"],
    "workload.rate_hz": ["5", "20"], "workload.slo_ms": ["50", "200"],
    "workload.arrival": ["fixed", "poisson"], "workload.grace_s": ["1", "2"],
    "workload.samples.occlusion": ["0.0", "0.3"],
    "technique.mode": ["warm", "cold", "active_active"],
    "technique.health_period_ms": ["10", "25", "250"],
    "technique.health_timeout_ms": ["20", "50"], "technique.hedge_ms": ["0", "5"],
    "technique.detector": ["probe", "passive"], "technique.idle_probe_ms": ["100", "250"],
    "technique.suspect_min_ms": ["10", "25"],
    "results.readable_by": ["root", "group", "all"],
}
OVERRIDES = st.lists(
    st.one_of(
        st.sampled_from(sorted(GROUPS)).flatmap(
            lambda g: st.sampled_from(GROUPS[g]).map(lambda v: f"{g}={v}")),
        st.sampled_from(sorted(PLAUSIBLE)).flatmap(
            lambda k: st.sampled_from(PLAUSIBLE[k]).map(lambda v: f"{k}={v}")),
        st.sampled_from(sorted(GROUPS)).flatmap(
            lambda g: st.sampled_from([*GROUPS[g], "nosuch"]).map(lambda v: f"{g}={v}")),
        st.tuples(st.sampled_from(KEYS), VALUES).map(lambda kv: f"{kv[0]}={kv[1]}"),
        st.tuples(st.sampled_from(["network.nosuch", "+bogus", "technique.nosuch", "run.x",
                                   "results.x"]),
                  ATOMS).map(lambda kv: f"{kv[0]}={kv[1]}"),
    ),
    max_size=6,
)


def validate(overrides: list[str]) -> str:
    """What `python -m harness` does before the network: 'ok' or the one-line error."""
    try:
        check_overrides(overrides)
    except ConfigError as e:
        return f"config error: {e}"
    return "ok"


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(OVERRIDES)
def test_any_overrides_validate_or_name_the_bad_key(overrides: list[str]) -> None:
    out = validate(overrides)  # any exception but ConfigError fails the test
    assert "\n" not in out
    if out != "ok":  # names a key and its value
        assert "=" in out, out


# ---- random valid networks, brought up and down with a random fault schedule ----
NETWORKS = int(os.environ.get("HX_FUZZ_NETWORKS", "3"))
TOPOS = {  # topology -> (nodes, links) the fault schedule may name
    "pair": (["h1", "h2"], ["h1-h2"]),
    "device_edge_cloud": (["d1", "e1", "e2", "c1"], ["d1-e1", "e1-c1", "d1-e2", "e2-c1"]),
}


def _action(nodes: list[str], links: list[str]) -> st.SearchStrategy[str]:
    at = st.sampled_from(["0.2", "0.5", "1", "1.5"])
    node, link = st.sampled_from(nodes), st.sampled_from(links)
    return st.one_of(
        st.tuples(at, node).map(lambda a: f"{{at_s:{a[0]},action:crash,target:{a[1]}}}"),
        st.tuples(at, link).map(lambda a: f"{{at_s:{a[0]},action:link_down,target:{a[1]},"
                                          "for_s:0.3}"),
        st.tuples(at, link, st.sampled_from(["1", "20"])).map(
            lambda a: f"{{at_s:{a[0]},action:link_degrade,target:{a[1]},delay_ms:{a[2]}}}"),
        st.tuples(at, node).map(lambda a: f"{{at_s:{a[0]},action:throttle,target:{a[1]},"
                                          "cpu_pct:20}"),
        st.tuples(at, node).map(lambda a: f"{{at_s:{a[0]},action:contention,target:{a[1]},"
                                          "workers:1,for_s:0.3}"),
        st.tuples(at, node, node).filter(lambda a: a[1] != a[2]).map(
            lambda a: f"{{at_s:{a[0]},action:partition,groups:[[{a[1]}],[{a[2]}]],"
                      "for_s:0.3}"),
    )


NETWORK_CASES = st.sampled_from(sorted(TOPOS)).flatmap(lambda t: st.tuples(
    st.just(t),
    st.lists(_action(*TOPOS[t]), min_size=0, max_size=3),
    st.sampled_from(["0", "1", "5"]), st.sampled_from(["0", "1", "10"]),
    st.sampled_from(["0", "20", "100"]),
))


@pytest.mark.needs_root
@root_only
@settings(max_examples=NETWORKS, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(NETWORK_CASES)
def test_random_networks_come_up_and_leave_nothing(case) -> None:
    topo, actions, delay, loss, bw = case
    before = machine_state()
    p = harness_cmd(f"topology={topo}", "run.duration_s=2", f"network.delay_ms={delay}",
                    f"network.loss_pct={loss}", f"network.bw_mbit={bw}",
                    f"faults.actions=[{','.join(actions)}]",
                    timeout=120)
    assert p.returncode == 0, (case, p.stderr[-2000:])
    assert "Traceback" not in p.stderr
    assert machine_state() == before, case
