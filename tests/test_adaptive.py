"""technique=adaptive without the network: the objective, the decisions a stage records,
the plan on the wire, the latency prediction and bad settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.core.config import ConfigError, LinkProps
from harness.emulation.topology import Link, Node, Topology
from harness.pipeline.deployment import Deployment
from harness.pipeline.routing import Route
from harness.run.experiment import compose_experiment
from harness.techniques import predict
from harness.techniques.adaptive.node.plan import Action, Decider, Plan, choose

DEC = ["topology=device_edge_cloud", "workload=digits", "technique=adaptive"]


def _plan(slo: float) -> Plan:
    return Plan(slo, [Action("failover", Route("middle", ["e2:1"], ["h"]), 31.0, 0.96),
                      Action("skip", Route("tail", ["c1:1"], ["h"], degraded=True), 2.0, 0.89),
                      Action("early_exit", Route("exit", ["d1:2"], ["h"]), 1.0, 0.87)])


@pytest.mark.parametrize("slo,down,want", [
    (25, set(), "skip"),  # failover misses the SLO: the most accurate that meets it
    (100, set(), "failover"),  # all meet it: the most accurate
    (100, {"e2:1"}, "skip"),  # the replica is down too
    (0.5, set(), "early_exit"),  # none meets it: the fastest
    (0.5, {"d1:2"}, "skip"),  # ... that is up
])
def test_objective(slo: float, down: set[str], want: str) -> None:
    action, rows = choose(_plan(slo), down)
    assert action is not None and action.name == want, rows
    assert [r["action"] for r in rows] == ["failover", "skip", "early_exit"]


def test_no_action_up_keeps_the_route() -> None:
    assert choose(_plan(25), {"e2:1", "c1:1", "d1:2"})[0] is None
    route = Route("middle", ["e1:1"], ["h"], policy="plan", options=_plan(25))
    events = []
    d = Decider(lambda *a, **kw: events.append((a, kw)))
    assert d.route_for(route, {"e1:1", "e2:1", "c1:1", "d1:2"}) is route
    assert events[0][1]["action"] is None


def test_a_stage_decides_once_per_set_of_down_targets_and_records_it() -> None:
    route = Route("middle", ["e1:1"], ["h"], policy="plan", options=_plan(25))
    events = []
    d = Decider(lambda kind, target, **kw: events.append((kind, target, kw)))
    assert d.route_for(route, set()) is route and not events  # all up: as planned
    chosen = d.route_for(route, {"e1:1"})
    assert chosen.model == "tail" and chosen.degraded
    assert d.route_for(route, {"e1:1"}) is chosen and len(events) == 1
    kind, target, detail = events[0]
    assert (kind, target, detail["action"], detail["slo_ms"]) == ("decide", "e1:1", "skip", 25)
    # timed, in ms: a choice among three takes microseconds (0 would be a clock not read
    # or seconds rounded away); one preempted call still stays under CONTINUER's 16.82 ms
    assert 0 < detail["decide_ms"] < 16.82 and len(detail["candidates"]) == 3
    # the skip target goes down as well: decided again, now the fastest left that is up
    assert d.route_for(route, {"e1:1", "c1:1"}).model == "exit" and len(events) == 2


def test_deciding_takes_well_under_5_ms() -> None:
    """The issue's goal, as a median over fresh decisions (one preempted call on a busy
    machine must not decide it)."""
    route = Route("middle", ["e1:1"], ["h"], policy="plan", options=_plan(25))
    events: list[dict] = []
    for _ in range(51):
        Decider(lambda kind, target, **kw: events.append(kw)).route_for(route, {"e1:1"})
    times = sorted(e["decide_ms"] for e in events)
    assert len(times) == 51 and times[25] <= 5, times


def test_the_plan_survives_the_wire_and_its_targets_are_watched() -> None:
    route = Route("middle", ["e1:1"], ["h"], policy="plan", options=_plan(25))
    back = Route.from_json(route.to_json())
    assert back == route
    assert back.all_targets() == ["e1:1", "e2:1", "c1:1", "d1:2"]
    with pytest.raises(ValueError, match="route.plan"):
        Route.from_json({**route.to_json(), "plan": {"slo_ms": 1}})


def test_prediction_adds_round_trips_transfer_and_hop_cost() -> None:
    topo = Topology("t", [Node("a", "device"), Node("b", "edge"), Node("c", "cloud")],
                    [Link("a", "b", props=LinkProps(delay_ms=5)),
                     Link("b", "c", props=LinkProps(delay_ms=2, bw_mbit=8))])
    assert topo.path_links("a", "c", LinkProps(delay_ms=0)) == ["a-b", "b-c"]
    assert topo.path_links("b", "b", LinkProps(delay_ms=0)) == []
    h = predict.hop(topo, LinkProps(delay_ms=0), "a", "c", nbytes=10_000, hop_ms=0.5)
    # 2 x (5 + 2) ms round trip; 80 kbit at 8 Mbit/s = 10 ms; 0.5 ms the hop itself
    assert (h["rtt_ms"], h["transfer_ms"], h["ms"]) == (14.0, 10.0, 24.5)


def test_the_plan_predicts_the_slow_replica_path(tmp_path: Path) -> None:
    # e2 is a far edge: 10 ms on each of its links (traffic takes the least-delay path,
    # so one slow link alone would be bypassed through e1 or the cloud)
    exp = compose_experiment(*DEC, "topology.links={d1-e2:{delay_ms:10},"
                                   "e1-e2:{delay_ms:10},e2-c1:{delay_ms:10}}")
    files = Deployment(None, exp.pipeline, tmp_path, lambda *a, **k: None).prepare()
    ips = {n.name: f"10.0.0.{i + 1}" for i, n in enumerate(exp.topology.nodes)}
    inst = exp.technique.instances(exp.plan, files, ips)
    assert [i.key for i in inst] == ["head@d1", "middle@e1", "tail@c1", "middle@e2"]
    plan = inst[0].route.options
    assert plan.slo_ms == 100  # the workload's
    fo, skip = plan.actions
    # 2 x (10 + 10) ms of round trips to e2 and on to c1, then the stages themselves
    assert 40 <= fo.predicted_ms <= 50 and skip.predicted_ms < 10, (fo, skip)
    assert fo.accuracy > skip.accuracy  # the card's split vs skip_only


@pytest.mark.parametrize("overrides,key", [
    (["technique.actions=[failover,retry]"], "technique.actions[1]"),
    (["technique.actions=[]"], "technique.actions"),
    (["technique.actions=[early_exit]"], "technique.early_exit"),
    (["technique.replica=e1"], "technique.replica.middle"),
    (["technique.stage=head"], "technique.stage"),
    (["technique.stage=nowhere", "technique.actions=[repartition]"], "technique.stage"),
    (["technique.stage=tail", "technique.actions=[repartition]"], "technique.actions"),
    (["technique.slo_ms=0"], "technique.slo_ms"),
    (["technique.accuracy={skip:1.5}"], "technique.accuracy.skip"),
    (["technique.detector=psychic"], "technique.detector"),
    (["topology.links={d9-e2:{delay_ms:15}}"], "topology.links.d9-e2"),
    (["topology.links={d1-e2:{delay_ms:-1}}"], "topology.links.d1-e2.delay_ms"),
])
def test_bad_settings_name_the_key(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError) as e:
        compose_experiment(*DEC, *overrides)
    assert str(e.value).startswith(key), str(e.value)


def test_a_repartition_is_loaded_once_and_kept_and_a_failed_load_falls_back() -> None:
    merge = Action("repartition", Route("tail", ["c1:1"], ["h"]), 1.5, 0.96,
                   load={"target": "c1:1", "path": "/p/middle_tail.onnx"})
    plan = Plan(25, [*_plan(25).actions[:2], merge])
    route = Route("middle", ["e1:1"], ["h"], policy="plan", options=plan)
    loads, events = [], []
    d = Decider(lambda kind, target, **kw: events.append((kind, kw)),
                lambda target, path: loads.append((target, path)) or {"ok": True,
                                                                      "load_ms": 3.0})
    assert d.route_for(route, {"e1:1"}) is merge.route  # as accurate as failover, in SLO
    assert loads == [("c1:1", "/p/middle_tail.onnx")]
    assert [k for k, _ in events] == ["decide", "repartition"] and events[1][1]["ok"]
    # the old cut is gone: the merged route stays when e1 returns
    assert d.route_for(route, set()) is merge.route and len(loads) == 1
    failing = Decider(lambda *a, **kw: events.append((a[0], kw)),
                      lambda target, path: {"ok": False, "error": "no such file"})
    events.clear()
    assert failing.route_for(route, {"e1:1"}).model == "tail"  # skip: the next best
    assert failing.route_for(route, {"e1:1"}) is plan.actions[1].route
    assert events[1][1]["ok"] is False and events[1][1]["error"] == "no such file"
    assert failing.route_for(route, set()) is route  # nothing was kept
