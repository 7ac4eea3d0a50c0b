"""The Docker backend end to end: containers on the harness's links, their limits,
processes, images and bad input (root + Docker). Faults in containers:
tests/test_docker_faults_live.py; the shared helpers: tests/docker_kit.py.

`make test` installs and starts Docker and builds the images first (make setup),
so Docker missing here is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.docker_kit import DOCKER, containers, docker_client, watching
from tests.helpers import (
    PIPELINE,
    RTT_ABOVE_MS,
    accounting,
    exp_for,
    fault_events,
    harness_cmd,
    machine_state,
    root_only,
    run_dir,
    run_outputs,
    run_pipeline,
)

pytestmark = [pytest.mark.needs_root, root_only]


def test_baseline_in_containers_matches_processes_and_leaves_nothing() -> None:
    docker_client()
    before = containers()
    with watching() as seen:
        s, df, ev = run_pipeline(*DOCKER, "faults=none", "run.duration_s=6", "seed=1")
    assert s["backend"].endswith("DockerBackend")
    # every request answered; one may miss the SLO when a neighbour steals the CPU
    assert s["n_failed"] == s["n_lost"] == 0 and s["availability"] >= 0.98, s
    nodes = {v[0] for states in seen.values() for v in states}
    assert nodes == {"s1", "s2", "d1", "e1", "e2", "c1"}, seen
    assert all(name.startswith(s["prefix"]) for name in seen)
    assert all(v[6] == "none" for states in seen.values() for v in states)  # no docker net
    assert containers() == before  # removed at teardown
    # as processes would: the seed's requests (the schedule is a pure function of it, and
    # the process backend replays it: tests/test_pipeline_live.py), the model card's answers
    from harness.run.experiment import sensors_of
    from harness.workload.schedule import make_schedule

    exp = exp_for(*PIPELINE, *DOCKER, "run.duration_s=6", "seed=1")
    planned = make_schedule(exp.workload, sensors_of(exp.workload, exp.topology), 6, 1)
    assert list(df["sample_id"]) == [x.sample_id for x in planned]
    assert abs(s["accuracy"] - s["reference_accuracy"]) <= 0.01
    assert s["providers"] == {k: ["CPUExecutionProvider"] for k in s["providers"]}


def test_limits_are_the_containers_and_thermal_updates_them_in_place() -> None:
    """Also: edges asking for every GPU with backend.gpu=prefer run on CPU, saying so (a
    run of its own cost ~10 s of make test)."""
    with watching() as seen:
        s, _, ev = run_pipeline(*DOCKER, "faults=thermal", "run.duration_s=8",
                                "topology.edge_cpu=0.5", "topology.edge_mem_mb=512",
                                "topology.edge_gpus=all", "backend.gpu=prefer")
    assert any("node e1 asked for gpus=all" in w and "run on CPU" in w for w in s["warnings"])
    assert s["providers"]["middle@e1"] == ["CPUExecutionProvider"]
    by_node = {}
    for states in seen.values():
        for node, quota, period, mem, swap, pids, _ in states:
            by_node.setdefault(node, set()).add((quota, period, mem, swap, pids))
    mb512 = 512 * 2**20
    assert by_node["e1"] == by_node["e2"] == {(50_000, 100_000, mb512, mb512, 1024)}
    # the device container's quota steps down during the run: 60 %, 30 %, 15 %
    quotas = {q for q, *_ in by_node["d1"]}
    assert {60_000, 30_000, 15_000} <= quotas, by_node["d1"]
    assert len(fault_events(ev, "throttle")) == 3


def _comm(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/comm").read().strip()
    except OSError:
        return ""


def _state(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_node_processes_run_inside_the_container(tmp_path) -> None:
    from harness.run.lifecycle import emulated
    from tests.helpers import exp_for

    with emulated(exp_for("topology=pair", "backend=docker", "network.delay_ms=1")) as emu:
        node = emu.nodes["h1"]
        c = node.container
        p = node.popen(["sleep", "30"])
        try:
            deadline = time.monotonic() + 5
            while (p.child_pid() is None or _comm(p.child_pid()) != "sleep") \
                    and time.monotonic() < deadline:
                time.sleep(0.01)  # forked by nsenter, exec'd by setpriv: sleep itself
            child = p.child_pid()
            assert child in node.resources.pids() and child in node.processes()
            for ns in ("net", "mnt", "pid", "uts", "ipc"):
                assert os.readlink(f"/proc/{child}/ns/{ns}") == os.readlink(
                    f"/proc/{node.ns_pid}/ns/{ns}"), ns
            status = dict(line.split(":\t", 1) for line in
                          open(f"/proc/{child}/status").read().splitlines() if ":\t" in line)
            holder = dict(line.split(":\t", 1) for line in
                          open(f"/proc/{node.ns_pid}/status").read().splitlines()
                          if ":\t" in line)
            assert int(status["CapBnd"], 16) == int(holder["CapBnd"], 16) == 1 << 23  # nice
            assert status["NoNewPrivs"].strip() == "1"
            # the processes kind leaves a container's processes to its container (killing
            # its init from there made containers exit at once: Docker 20.10 deadlocks)
            from harness.emulation.inventory import run_pids

            inside = set(run_pids(emu.ledger.prefix))
            assert child not in inside and node.ns_pid not in inside and p.pid in inside
            top = c.top()  # the container's own view lists it
            assert any("sleep 30" in " ".join(row) for row in top["Processes"])
            p.send_signal(signal.SIGTERM)  # reaches sleep, not just nsenter
            assert p.wait(timeout=5) == -signal.SIGTERM
            out = node.run([node.python, "-c", "import socket; print(socket.gethostname())"])
            assert out.strip() == "h1"
            # a hang and its end, then a kill: the launcher never keeps a stopped child
            q = node.popen(["sleep", "30"])
            deadline = time.monotonic() + 10
            while q.child_pid() is None and time.monotonic() < deadline:
                time.sleep(0.01)  # nsenter has forked the child
            assert node.freeze() >= 1 and q.poll() is None
            time.sleep(0.3)
            assert node.thaw() >= 1
            time.sleep(0.1)
            assert not any(_state(pid) == "T" for pid in node.processes())
            node.freeze()
            q.kill()  # while frozen: the child and its launcher both go
            assert q.wait(timeout=5) == -signal.SIGKILL
        finally:
            if p.poll() is None:
                p.kill()
        prefix = emu.ledger.prefix
    assert containers(prefix) == []
    assert not any(v for v in machine_state().values() if prefix in str(v))


def test_link_delay_and_fidelity_hold_in_containers() -> None:
    """With the sensors as processes (backend.containers=[device,edge,cloud]), so links
    between a process and a container are measured too (a run of its own for the mixed
    case cost ~10 s of make test)."""
    mixed = ("backend.containers=[device,edge,cloud]", "faults=none", "run.duration_s=3")
    for _attempt in (1, 2):  # a noise burst on the host spoils one pair of runs, not two
        with watching() as seen:
            s0, _, _ = run_pipeline(*DOCKER, *mixed, "network.delay_ms=0")
        s10, _, _ = run_pipeline(*DOCKER, *mixed, "network.delay_ms=10",
                                 "workload.slo_ms=500", "fidelity.enabled=true")
        rise = s10["latency_ms"]["p50"] - s0["latency_ms"]["p50"]
        out_of_tolerance = [w for w in s10["warnings"] if "fidelity" in w]
        if -2 <= rise - 60 <= 3 * RTT_ABOVE_MS and not out_of_tolerance:
            break
    # s1 -> d1 -> e1 -> c1 and back: 6 link traversals of 10 ms (as on the process backend)
    assert -2 <= rise - 60 <= 3 * RTT_ABOVE_MS, (s0["latency_ms"], s10["latency_ms"])
    assert not out_of_tolerance, out_of_tolerance
    # the sensors stayed processes: containers for the other nodes only
    assert {v[0] for states in seen.values() for v in states} == {"d1", "e1", "e2", "c1"}
    assert s0["n_failed"] == s0["n_lost"] == 0


def test_gpu_required_exits_2() -> None:
    before = machine_state()
    p = harness_cmd("topology=device_edge_cloud", "workload=digits", "technique=baseline",
                    *DOCKER, "topology.edge_gpus=1")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "config error: topology node e1: gpus=1: Docker has no GPU runtime here (nvidia; "
        f"runtimes: {', '.join(sorted(docker_client().info()['Runtimes']))}) "
        "(backend.gpu=prefer runs it on CPU)"]
    assert machine_state() == before
    # gpu=prefer runs them on CPU: test_limits_are_the_containers_and_thermal_...


@pytest.mark.parametrize(("override", "line"), [
    ("backend.image=hx-nosuch:1", "config error: backend.image='hx-nosuch:1': no such image "
     "here (there is no registry: `make images` builds hx-stage)"),
    ("topology.edge_gpus=-1", "config error: topology.nodes[3].gpus=-1: must be a count >= 0 "
     "or 'all'"),
    ("backend.containers=[edge,gpu]", "config error: backend.containers='gpu': no such role "
     "or node (roles: sensor, device, edge, cloud, host)"),
    ("backend.gpu=maybe", "config error: backend.gpu='maybe': one of require, prefer"),
])
def test_bad_docker_input_exit_2(override: str, line: str) -> None:
    before, names = machine_state(), containers()
    p = harness_cmd("topology=device_edge_cloud", "workload=digits", *DOCKER, override)
    assert p.returncode == 2, p.stderr[-1000:]
    assert p.stderr.strip().splitlines() == [line]
    assert machine_state() == before and containers() == names


def test_cli_mode_runs_commands_inside_the_containers() -> None:
    script = ("h1 hostname\n"
              "h1 cat /proc/1/comm\n"
              "h2 python -m harness.probe echo --bind h2 --port 7301 --idle-s 3 &\n"
              "h2 sleep 0.5\n"
              "h1 python -m harness.probe rtt h2 --port 7301 --count 50 --interval-ms 5\n"
              "pingall\n")
    p = harness_cmd("topology=pair", "network.delay_ms=5", "mode=cli", *DOCKER, input=script)
    assert p.returncode == 0, p.stderr
    text = p.stdout + p.stderr  # Mininet's CLI prints through its logger (stderr)
    lines = text.splitlines()
    assert "h1" in lines and "docker-init" in lines  # the container's UTS and PID 1
    rtt = next(json.loads(line[line.index("{"):]) for line in lines if '"rtts_ms"' in line)
    assert rtt["received"] >= 48 and rtt["median_ms"] >= 10  # over the emulated link
    assert "0% dropped" in text
    summary = json.loads((run_dir(p.stdout) / "summary.json").read_text())
    assert summary["mode"] == "cli" and summary["verdict"] == "VALID"
    assert containers(summary["prefix"]) == []


def test_a_stage_from_an_image_with_its_own_command() -> None:
    """The tail served by the image's own server: its container beside c1's, its
    metadata recorded, the answers right; and who listens where: stages on their node's
    emulated address only, the image's server on loopback only (`{host}`): its one client
    is the stage in front of it, in the same network namespace, so nothing over the
    emulated links reaches it directly. (One run for both: a run each cost ~10 s.)"""
    from harness.pipeline.routing import LEAN_PORT_OFFSET
    from tests.helpers import during_run, namespaces_listening, servers_by_node

    overrides = [*PIPELINE, *DOCKER, "pipeline=image_tail", "faults=none", "run.duration_s=4",
                 "seed=1"]
    exp = exp_for(*overrides)
    ips, port = exp.topology.addresses(), exp.pipeline.port
    with watching() as seen_containers:
        code, out, listening = during_run(overrides, namespaces_listening)
    assert code == 0, out[-3000:]
    s, df, ev = run_outputs(run_dir(out))
    accounting(s, df)
    assert f"{s['prefix']}-c1-tail-c1" in seen_containers  # the image's own, beside c1's
    ready = {json.loads(d)["stage"]: json.loads(d) for d in
             ev[ev["kind"] == "stage.ready"]["detail"]}
    up = ready["tail"]["upstream"]  # what the image's server says about itself
    assert up["model"] == "tail" and set(up["inputs"]) == {"m", "h"}
    assert set(up["outputs"]) == {"logits"}
    assert set(df["path"].dropna()) == {"d1:head>e1:middle>c1:tail"}
    assert s["n_failed"] == s["n_lost"] == 0
    assert abs(s["accuracy"] - s["reference_accuracy"]) <= 0.01
    assert containers(s["prefix"]) == []
    image_port = exp.pipeline.stages[-1].image_port
    lean = port + LEAN_PORT_OFFSET  # the stage-to-stage hop, same address
    assert servers_by_node(listening, ips) == {
        "d1": {("tcp", ips["d1"], port), ("tcp", ips["d1"], lean)},
        "e1": {("tcp", ips["e1"], port), ("tcp", ips["e1"], lean)},
        "c1": {("tcp", ips["c1"], port), ("tcp", ips["c1"], lean),
               ("tcp", "127.0.0.1", image_port)}}


def test_image_stage_needs_a_container_node() -> None:
    p = harness_cmd("topology=device_edge_cloud", "workload=digits", "pipeline=image_tail",
                    "backend=mininet")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "config error: pipeline.stages[2].image='hx-stage': backend mininet runs no "
        "container images (backend=docker does)"]
    p = harness_cmd("topology=device_edge_cloud", "workload=digits", "pipeline=image_tail",
                    *DOCKER, "pipeline.stages.2.image=hx-nosuch:2")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "config error: pipeline.stages[2].image='hx-nosuch:2': no such image here (there is "
        "no registry: `make images` builds hx-stage)"]
