"""The canary stream: its schedule and the configs that cannot have one (no root)."""

from __future__ import annotations

import pytest

from harness.core.config import ConfigError
from harness.measure.metrics.canary import FIRST_ID, canary_schedule
from harness.run.experiment import check_overrides


def test_schedule_every_period_cycling_samples_with_ids_of_its_own() -> None:
    s = canary_schedule(200, 0.05, [7, 8, 9])
    assert [r.scheduled_s for r in s] == pytest.approx([0.005 * i for i in range(10)])
    assert [r.sample_id for r in s][:4] == [7, 8, 9, 7]
    assert s[0].request_id == FIRST_ID and {r.sensor for r in s} == {"canary"}
    assert canary_schedule(0, 10, [1]) == []


@pytest.mark.parametrize(("overrides", "why"), [
    (["measure.canary_hz=200"], "needs a workload"),
    (["measure.canary_hz=-1", "workload=digits", "topology=device_edge_cloud"], ">= 0"),
    (["measure.canary_hz=200", "workload=har", "pipeline=har", "topology=device_edge_cloud",
      "technique=sensing_redundancy"], "needs a chain"),
])
def test_configs_that_cannot_have_a_canary(overrides: list[str], why: str) -> None:
    with pytest.raises(ConfigError, match="measure.canary_hz") as e:
        check_overrides(overrides)
    assert why in str(e.value)


def test_a_chain_takes_one() -> None:
    e = check_overrides(["measure.canary_hz=200", "workload=digits",
                         "topology=device_edge_cloud"])
    assert e.measure.canary_hz == 200
