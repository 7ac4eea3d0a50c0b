"""What counts as bad input: non-finite numbers anywhere in a config are a one-line
ConfigError naming the key (exit 2 before the network)."""

from __future__ import annotations

import pytest

from harness.core.config import ConfigError
from tests.helpers import exp_for, harness_cmd, machine_state, root_only

DEC = ["topology=device_edge_cloud"]
PIPE = [*DEC, "workload=digits"]

# (overrides, the key the one-line error must start with, the value as it is printed)
NON_FINITE = [
    (["network.bw_mbit=inf"], "network.bw_mbit", "inf"),
    (["network.jitter_ms=nan"], "network.jitter_ms", "nan"),
    (["network.loss_pct=nan"], "network.loss_pct", "nan"),
    (["network.delay_ms=-inf"], "network.delay_ms", "-inf"),
    (["run.duration_s=nan"], "run.duration_s", "nan"),
    (["fidelity.interval_ms=nan"], "fidelity.interval_ms", "nan"),
    (["fidelity.delay_tol_ms=inf"], "fidelity.delay_tol_ms", "inf"),
    (["topology.link.delay_ms=nan"], "topology.link.delay_ms", "nan"),
    ([*DEC, "topology.edge_cpu=nan"], "topology.edge_cpu", "nan"),
    ([*DEC, "topology.edge_cloud_link.bw_mbit=inf"], "topology.edge_cloud_link.bw_mbit",
     "inf"),
    ([*DEC, "topology.links={d1-e2:{delay_ms:nan}}"], "topology.links.d1-e2.delay_ms", "nan"),
    ([*DEC, "topology.nodes={e2:{cpu:inf}}"], "topology.nodes.e2.cpu", "inf"),
    ([*DEC, "faults.actions=[{at_s:nan,action:crash,target:e1}]"],
     "faults.actions[0].at_s", "nan"),
    ([*DEC, "faults.actions=[{at_s:1,action:crash,target:e1,for_s:inf}]"],
     "faults.actions[0].for_s", "inf"),
    ([*DEC, "faults.actions=[{at_s:1,action:link_degrade,target:d1-e1,loss_pct:nan}]"],
     "faults.actions[0].loss_pct", "nan"),
    ([*PIPE, "workload.rate_hz=nan"], "workload.rate_hz", "nan"),
    ([*PIPE, "workload.slo_ms=inf"], "workload.slo_ms", "inf"),
    ([*PIPE, "workload.grace_s=nan"], "workload.grace_s", "nan"),
    ([*PIPE, "workload.rate_schedule=[{at_s:1,rate_hz:inf}]"],
     "workload.rate_schedule[0].rate_hz", "inf"),
    ([*PIPE, "workload.samples.occlusion=nan"], "workload.samples.occlusion", "nan"),
    ([*PIPE, "technique=failover", "technique.health_period_ms=nan"],
     "technique.health_period_ms", "nan"),
    ([*PIPE, "technique=failover", "technique.hedge_ms=inf"], "technique.hedge_ms", "inf"),
    ([*PIPE, "technique=sensing_redundancy", "technique.wait_ms=nan"],
     "technique.wait_ms", "nan"),
]


@pytest.mark.parametrize("overrides,key,shown", NON_FINITE,
                         ids=[o[-1] for o, _, _ in NON_FINITE])
def test_a_non_finite_number_is_a_config_error_naming_its_key(overrides, key, shown) -> None:
    with pytest.raises(ConfigError) as e:
        exp_for(*overrides)
    assert str(e.value) == f"{key}={shown}: must be a finite number"


@root_only
@pytest.mark.needs_root
@pytest.mark.parametrize("override,key", [("network.delay_ms=nan", "network.delay_ms"),
                                          ("run.duration_s=inf", "run.duration_s")])
def test_cli_non_finite_exit_2_one_line_before_the_network(override, key) -> None:
    before = machine_state()
    p = harness_cmd(override, timeout=60)
    assert p.returncode == 2, p.stderr[-2000:]
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert lines == [f"config error: {override}: must be a finite number"], p.stderr
    assert p.stdout == ""  # no run directory
    after = machine_state()  # nothing new (another run nearby may end meanwhile)
    assert all(set(after[k]) <= set(before[k]) for k in after), (before, after)
