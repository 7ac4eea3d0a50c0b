"""What counts as bad input: non-finite numbers anywhere in a config are a one-line
ConfigError naming the key (exit 2 before the network); Hydra's and OmegaConf's
errors about an override are too; a bug in the harness's own validation is not bad
input and must surface as the crash it is."""

from __future__ import annotations

import subprocess
import textwrap

import pytest

from harness.core.config import ConfigError
from harness.run.experiment import check_overrides
from tests.helpers import PY, REPO, exp_for, harness_cmd, machine_state, root_only

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


# ---- which exceptions are bad input


@pytest.mark.parametrize("overrides,names", [
    (["network.nosuch=1"], "network.nosuch"),  # Hydra: ConfigCompositionException
    (["shaper=nosuch"], "shaper/nosuch"),  # Hydra: MissingConfigException
    (["run.duration_s=[1"], "run.duration_s=[1"),  # Hydra: OverrideParseException
    (["network.delay_ms=1", "workload=null"], "workload=null"),  # ValueError, in Hydra
])
def test_hydras_errors_about_an_override_are_config_errors(overrides, names) -> None:
    with pytest.raises(ConfigError) as e:
        check_overrides(overrides)
    assert "\n" not in str(e.value) and names in str(e.value), str(e.value)


def test_a_bug_in_validation_is_not_reported_as_bad_input(monkeypatch) -> None:
    from harness.core import config

    def broken(self, key: str) -> None:
        raise AttributeError("'NetworkConfig' object has no attribute 'bw'")

    monkeypatch.setattr(config.NetworkConfig, "validate", broken)
    with pytest.raises(AttributeError, match="has no attribute 'bw'"):
        check_overrides(["network.delay_ms=1"])


def test_cli_a_bug_in_validation_crashes_with_its_traceback() -> None:
    """Not exit 2 with a one-line "config error": the traceback, and exit 1."""
    script = textwrap.dedent("""
        import sys
        from harness.core import config

        def broken(self, key):
            raise AttributeError("'NetworkConfig' object has no attribute 'bw'")

        config.NetworkConfig.validate = broken
        from harness.__main__ import main
        sys.argv = ["harness", "network.delay_ms=1"]
        main()
    """)
    p = subprocess.run([PY, "-c", script], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 1, (p.returncode, p.stderr[-2000:])
    assert "Traceback (most recent call last)" in p.stderr
    assert "in broken" in p.stderr  # the frame that failed
    assert p.stderr.strip().endswith("AttributeError: 'NetworkConfig' object has no "
                                     "attribute 'bw'")
    assert "config error" not in p.stderr


@pytest.mark.parametrize("override", ["network.nosuch=1", "workload=null"])
def test_cli_bad_override_is_still_one_line_exit_2(override) -> None:
    p = harness_cmd(override, timeout=60)
    assert p.returncode == 2, p.stderr[-2000:]
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("config error:"), p.stderr
    assert override.split("=")[0] in lines[0]


@pytest.mark.parametrize("overrides,error", [
    ([*PIPE, "technique=failover", "technique.health_period_ms=e1"],
     "technique.health_period_ms='e1': must be a number"),
    ([*PIPE, "technique=failover", "technique.hedge_ms=true"],
     "technique.hedge_ms=True: must be a number"),
    ([*PIPE, "technique=reconfiguration", "technique.failures=2.5"],
     "technique.failures=2.5: must be an integer"),
    ([*DEC, "topology.edge_cpu=e1"], "topology.edge_cpu='e1': must be a number"),
])
def test_a_plugins_numbers_are_checked_by_their_annotations(overrides, error) -> None:
    """A technique's or topology builder's number is read as a structured config's is: a
    string never reaches the plug-in's own comparisons (where it was a TypeError)."""
    with pytest.raises(ConfigError) as e:
        check_overrides(overrides)
    assert str(e.value) == error


def test_a_type_error_inside_a_plugin_is_a_bug_not_bad_input(monkeypatch) -> None:
    from harness.techniques import base

    def broken(**values: float) -> None:
        raise TypeError("'<=' not supported between instances of 'NoneType' and 'int'")

    monkeypatch.setattr(base, "positive", broken)
    with pytest.raises(TypeError, match="NoneType"):
        check_overrides([*PIPE, "technique=failover"])
    # a key the plug-in needs and does not get is still bad input
    from harness.run.experiment import _call_target

    with pytest.raises(ConfigError) as e:
        _call_target("topology", {"_target_": "harness.emulation.traces.rates_mbit"})
    assert str(e.value) == "topology: missing a required argument: 'stamps_ms'"
