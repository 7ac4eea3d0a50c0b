"""Forwarding policies by name (no root): the pipeline's own and each technique's in-node
part, found without a list to edit, on the wire both ways, and loaded by a stage without
any host-side code."""

from __future__ import annotations

import json
import subprocess

import pytest

from harness.pipeline.node import policies
from harness.pipeline.routing import Route
from tests.helpers import PY, REPO

HEDGE = {"model": "m", "targets": ["a:1", "b:1"], "inputs": ["x"], "policy": "hedge",
         "hedge_ms": 5.0}
FALLBACK = {"model": "m", "targets": ["a:1"], "inputs": ["h"], "policy": "fallback",
            "health": {"detector": "passive"},
            "fallback": {"model": "t", "targets": ["c:1"], "inputs": ["h"],
                         "zeros": {"m": [4]}, "degraded": True}}


def test_each_policy_is_found_by_name_where_its_technique_keeps_it() -> None:
    found = policies.discover()
    assert {"ordered", "hedge", "fallback", "plan"} <= set(found)
    assert found["ordered"].__module__ == "harness.pipeline.node.forwarding"
    for name, technique in {"hedge": "failover", "fallback": "structural",
                            "plan": "adaptive"}.items():
        assert found[name].__module__.startswith(f"harness.techniques.{technique}.node."), name
    with pytest.raises(ValueError, match=r"route.policy='gossip': one of fallback, hedge, "):
        Route.from_json({"model": "m", "targets": ["a:1"], "inputs": ["x"],
                         "policy": "gossip"})


@pytest.mark.parametrize("data", [HEDGE, FALLBACK], ids=["hedge", "fallback"])
def test_a_policys_settings_ride_on_the_route_both_ways(data: dict) -> None:
    route = Route.from_json(data)
    assert route is not None and route.options is not None
    wire = route.to_json()
    assert wire["policy"] == data["policy"] and Route.from_json(wire) == route
    own = {"hedge": "hedge_ms", "fallback": "fallback"}[data["policy"]]
    assert Route.from_json({**wire, own: data[own]}) == route  # as a technique writes it


def test_a_fallbacks_targets_are_watched_and_another_policys_keys_refused() -> None:
    assert Route.from_json(FALLBACK).all_targets() == ["a:1", "c:1"]
    assert Route.from_json(HEDGE).all_targets() == ["a:1", "b:1"]
    with pytest.raises(ValueError, match="route.hedge_ms: unknown key"):
        Route.from_json({**HEDGE, "policy": "ordered"})
    with pytest.raises(ValueError, match="route.fallback: the route to fall back to"):
        Route.from_json({k: v for k, v in FALLBACK.items() if k != "fallback"})


def test_a_stage_loads_a_techniques_policy_without_any_host_side_code() -> None:
    """The stage finds `hedge` by import path: the technique's node part and its light
    packages, nothing of the technique itself, the run or the emulation."""
    code = ("import json, sys\n"
            "from harness.pipeline.node import stage\n"
            "from harness.pipeline.routing import Route\n"
            f"r = Route.from_json(json.loads({json.dumps(json.dumps(FALLBACK))}))\n"
            "assert type(r.options).__module__.endswith('fallback')\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('harness'))))\n")
    p = subprocess.run([PY, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    loaded = json.loads(p.stdout.splitlines()[-1])
    assert "harness.techniques.structural.node.fallback" in loaded
    host = [m for m in loaded if m.startswith(("harness.emulation", "harness.run",
                                               "harness.faults", "harness.measure",
                                               "harness.pipeline.deployment",
                                               "harness.pipeline.instances",
                                               "harness.pipeline.plan",
                                               "harness.pipeline.placement",
                                               "harness.techniques.base"))
            or m.endswith(".technique")]
    assert host == []
