"""Docker nodes over emulated hosts, end to end (root + Docker): each host's agent runs
its share's containers (emulated hosts share this machine's daemon), faults reach them
through the agent, and each host removes only its own containers."""

from __future__ import annotations

import pytest

from tests.docker_kit import DOCKER, containers, docker_client, watching
from tests.helpers import fault_events, machine_state, root_only, run_pipeline

pytestmark = [pytest.mark.needs_root, root_only]
PLACE = "hosts.place={s1: h1, s2: h1, d1: h1, e1: h2, e2: h2, c1: h2}"


def test_containers_on_two_hosts_fail_over_and_leave_nothing() -> None:
    """d1 and the sensors in containers on h1, the edges and the cloud on h2: e1's crash
    (its container's processes, killed by h2's agent) costs what it costs on one host,
    the answers are the model's, and every container of the run is gone after it."""
    docker_client()
    before = containers()
    with watching() as seen:
        s, df, ev = run_pipeline(*DOCKER, "hosts=emulated", "hosts.n=2", PLACE,
                                 "technique=failover", "faults=edge_crash",
                                 "run.duration_s=7", "seed=1")
    assert s["backend"].endswith("DockerBackend")
    assert {n: d["host"] for n, d in s["hosts"]["nodes"].items()} == {
        "s1": "h1", "s2": "h1", "d1": "h1", "e1": "h2", "e2": "h2", "c1": "h2"}
    # every node a container of this run, none on a docker network
    nodes = {v[0] for name, states in seen.items() if name.startswith(s["prefix"])
             for v in states}
    assert nodes == {"s1", "s2", "d1", "e1", "e2", "c1"}, seen
    assert all(v[6] == "none" for states in seen.values() for v in states)
    assert list(fault_events(ev, "crash")["target"]) == ["e1"]
    assert s["availability_after_fault"] >= 0.95 and s["mttr_ms"] <= 150, \
        (s["availability_after_fault"], s["mttr_ms"])
    after = df[df["scheduled_s"] > s["fault_at_s"] + 0.3]
    assert set(after["path"].dropna()) == {"d1:head>e2:middle>c1:tail"}
    assert abs(s["accuracy"] - s["reference_accuracy"]) <= 0.01
    assert containers() == before
    assert not any(v for v in machine_state().values() if s["prefix"] in str(v))
