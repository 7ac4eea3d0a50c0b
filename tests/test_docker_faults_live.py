"""Faults in containers, end to end (root + Docker): every fault kind in one run, an
out-of-memory kill, and a run killed -9 then cleaned (warm failover in containers runs
over emulated hosts: tests/test_hosts_run_live.py)."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.docker_kit import DOCKER, containers, docker_client
from tests.helpers import (
    PY,
    REPO,
    accounting,
    fault_events,
    harness_cmd,
    machine_state,
    root_only,
    run_dir,
    run_outputs,
    run_pipeline,
)

pytestmark = [pytest.mark.needs_root, root_only]


def test_out_of_memory_is_an_event_and_a_recorded_failure() -> None:
    p = harness_cmd("topology=device_edge_cloud", "workload=digits", "technique=baseline",
                    *DOCKER, "faults=none", "run.duration_s=4", "topology.edge_mem_mb=20",
                    timeout=300)
    assert p.returncode == 1, p.stderr[-2000:]
    s, df, ev = run_outputs(run_dir(p.stdout))
    assert s["verdict"] == "INVALID"
    assert any("killed by the OOM killer (memory limit 20 MiB)" in r
               for r in s["verdict_reasons"]), s["verdict_reasons"]
    oom = ev[ev["kind"] == "node.oom"]
    assert "e1" in set(oom["target"]), ev["kind"].tolist()
    assert json.loads(oom["detail"].iloc[0])["mem_mb"] == 20
    if df is not None:
        accounting(s, df)
    assert containers(s["prefix"]) == []


def test_kill_9_then_clean_removes_the_run_but_not_a_hand_made_container() -> None:
    client = docker_client()
    mine = client.containers.run("hx-stage:latest", ["sleep", "infinity"], detach=True,
                                 network_mode="none", name=f"handmade{os.getpid()}")
    try:
        before = machine_state()
        proc = subprocess.Popen(
            [PY, "-m", "harness", "topology=device_edge_cloud", "workload=digits",
             "technique=failover", "faults=edge_crash", *DOCKER, "run.duration_s=30"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 120
        for line in proc.stdout:  # until the run is replaying (stages up, containers live)
            if "run.start" in line or time.monotonic() > deadline:
                break
        assert len(containers()) >= 6
        proc.kill()
        proc.wait()
        out = subprocess.run([PY, "-m", "harness.clean"], cwd=REPO, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "containers" in out.stdout
        assert containers() == []
        assert machine_state() == before
        mine.reload()
        assert mine.status == "running"
    finally:
        mine.remove(force=True)


def test_the_fault_catalogue_in_containers() -> None:
    """Every fault kind in one run (faults=catalogue; one run per kind cost make test
    about a minute beside a busy loop): each applied, none failed, and what they did."""
    s, df, ev = run_pipeline(*DOCKER, "faults=catalogue", "run.duration_s=15")
    assert "fault.error" not in set(ev["kind"])
    planned = {f"fault.{a['action']}" for a in s["faults_schedule"]}
    kinds = {"throttle", "contention", "partition", "link_degrade", "link_down",
             "sensor_noise", "hang", "crash", "kill"}
    assert {f"fault.{k}" for k in kinds} <= planned  # with their inverses
    assert planned <= set(ev["kind"]), (planned, ev["kind"].tolist())
    # power back: e1's stage restarted in its container and served until the kill
    back = float(fault_events(ev, "restore")["t_s"].iloc[0])
    killed = float(fault_events(ev, "kill")["t_s"].iloc[0])
    between = df[(df["scheduled_s"] > back + 1.5) & (df["scheduled_s"] < killed)]
    assert len(between) and (between["status"] == "ok").mean() >= 0.9
    # the stage process died, the node did not: nothing answers after it
    after = df[df["scheduled_s"] > killed + 0.2]
    assert len(after) and (after["status"] == "ok").mean() <= 0.05
