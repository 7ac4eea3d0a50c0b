"""Fault schedules as data: kinds, parsing, inverses, the first fault (no root, no network)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from harness.core.config import ConfigError
from harness.faults import base, kinds
from harness.faults.schedule import FaultsConfig, parse_action
from tests.helpers import REPO, compose_cfg, exp_for

SHIPPED = sorted((REPO / "conf" / "faults").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_schedule_parses(path: Path) -> None:
    data = OmegaConf.to_container(compose_cfg(f"faults={path.stem}").faults, resolve=True)
    faults = FaultsConfig.parse(data)
    assert len(faults.actions) == len(data["actions"])
    for a, raw in zip(faults.actions, data["actions"], strict=True):
        d = a.to_dict()
        assert {k: d[k] for k in raw} == raw  # every key as written, none dropped or moved
        assert isinstance(a.params, a.kind.Params)
        assert parse_action(d, "again") == a  # summary.json's form parses back the same
    # for_s expands into the kind's inverse that much later, on the same target
    inverses = [(a.at_s + a.for_s, a.kind.inverse, a.target)
                for a in faults.actions if a.for_s is not None]
    sched = faults.schedule()
    assert len(sched) == len(faults.actions) + len(inverses)
    assert [s.at_s for s in sched] == sorted(s.at_s for s in sched)
    restores = [(s.at_s, s.action, s.target) for s in sched if s not in faults.actions]
    assert sorted(restores, key=str) == sorted(inverses, key=str)


def test_every_kind_has_an_inverse_that_restores() -> None:
    reg = base.registry()
    assert {"crash", "restore", "kill", "hang", "resume", "link_down", "link_up",
            "link_degrade", "link_restore", "partition", "heal", "throttle", "unthrottle",
            "contention", "contention_end", "sensor_noise", "sensor_clean"} <= set(reg)
    for kind in reg.values():
        if kind.inverse is not None:
            assert reg[kind.inverse].restores, kind.name
            assert not kind.restores, kind.name


def test_first_fault_ignores_every_restoration() -> None:
    # sensor_clean is a restoration: the first fault is the crash at 3 s (the hand-written
    # list of restoring actions in harness/run.py before 76bc2a5 lacked it and said 1 s)
    f = FaultsConfig.parse({"actions": [{"at_s": 1, "action": "sensor_clean", "target": "s2"},
                                        {"at_s": 3, "action": "crash", "target": "e1"}]})
    assert f.first_fault_s() == 3
    f = FaultsConfig.parse({"actions": [{"at_s": 0.5, "action": "heal"},
                                        {"at_s": 2, "action": "resume", "target": "e1"}]})
    assert f.first_fault_s() is None


def test_for_s_expands_into_the_inverse_carrying_what_it_needs() -> None:
    f = FaultsConfig.parse({"actions": [
        {"at_s": 3, "action": "partition", "groups": [["e1"], ["c1"]], "for_s": 2},
        {"at_s": 1, "action": "link_degrade", "target": "d1-e1", "delay_ms": 5, "for_s": 1}]})
    got = [(a.at_s, a.action, a.label()) for a in f.schedule()]
    assert got == [(1, "link_degrade", "d1-e1"), (2, "link_restore", "d1-e1"),
                   (3, "partition", "e1|c1"), (5, "heal", "e1|c1")]


@pytest.mark.parametrize("data,key", [
    ({"at_s": 1, "action": "crash", "target": "e1", "cpu_pct": 5}, "t.cpu_pct"),
    ({"at_s": 1, "action": "explode", "target": "e1"}, "t.action"),
    ({"action": "crash", "target": "e1"}, "t.at_s"),
    ({"at_s": -1, "action": "crash", "target": "e1"}, "t.at_s"),
    ({"at_s": 1, "action": "kill", "target": "e1", "for_s": 2}, "t.for_s"),
    ({"at_s": 1, "action": "throttle", "target": "e1"}, "t.cpu_pct"),
    ({"at_s": 1, "action": "throttle", "target": "e1", "cpu_pct": 0}, "t.cpu_pct"),
    ({"at_s": 1, "action": "contention", "target": "e1", "workers": 0}, "t.workers"),
    ({"at_s": 1, "action": "link_degrade", "target": "d1-e1"}, "t="),
    ({"at_s": 1, "action": "link_degrade", "target": "d1-e1", "loss_pct": 101}, "t.loss_pct"),
    ({"at_s": 1, "action": "link_degrade", "target": "d1-e1", "delay_ms": 1,
      "direction": "up"}, "t.direction"),
    ({"at_s": 1, "action": "partition", "groups": [["e1"]]}, "t.groups"),
    ({"at_s": 1, "action": "sensor_noise", "target": "s1", "noise_sigma": -1},
     "t.noise_sigma"),
    ({"at_s": "soon", "action": "crash", "target": "e1"}, "t.at_s"),
])
def test_bad_actions_name_the_key(data: dict, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_action(data, "t")
    assert str(e.value).startswith(key), str(e.value)


@pytest.mark.parametrize("overrides,key", [
    (["faults.actions=[{at_s: 1, action: link_down, target: e1-c9}]"],
     "faults.actions[0].target"),
    (["faults.actions=[{at_s: 1, action: partition, groups: [[e1], [zz]]}]"],
     "faults.actions[0].groups[1]"),
    (["faults.actions=[{at_s: 1, action: sensor_noise, target: e1}]", "workload=digits"],
     "faults.actions[0].target"),
])
def test_targets_are_checked_against_the_topology(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError) as e:
        exp_for("topology=device_edge_cloud", *overrides)
    assert str(e.value).startswith(key), str(e.value)


def test_a_new_kind_is_one_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dropping a module into the kinds package is all it takes (no list to edit)."""
    (tmp_path / "wobble.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass
        from harness.faults.base import Fault

        @dataclass
        class WobbleParams:
            hz: float = 1.0

        class Wobble(Fault):
            name = "wobble"
            inverse = "steady"
            Params = WobbleParams

            def apply(self, ctx, action):
                return {"hz": action.params.hz}

        class Steady(Fault):
            name = "steady"
            restores = True

            def apply(self, ctx, action):
                return {}
    '''))
    monkeypatch.setattr(kinds, "__path__", [*kinds.__path__, str(tmp_path)])
    base.forget()
    try:
        a = parse_action({"at_s": 1, "action": "wobble", "target": "e1", "hz": 3,
                          "for_s": 1}, "t")
        assert a.params.hz == 3
        assert [x.action for x in FaultsConfig([a]).schedule()] == ["wobble", "steady"]
    finally:
        monkeypatch.undo()
        base.forget()
    assert "wobble" not in base.registry()
