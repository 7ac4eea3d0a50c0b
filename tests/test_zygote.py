"""Node processes forked from the zygote (harness/emulation/zygote): in their node, with
Popen's behaviour (exit codes, pipes, signals), failures said, memory shared.

Every live test runs its stages and sensors through the zygote (`backend.zygote` is
true by default): the fault catalogue, restarts, OOM and the kill -9 trials are those
tests'. Here: what a fork must be to stand in for an exec'd process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness.emulation.ledger import ENV_MARK
from harness.emulation.tc import EmulationError
from harness.emulation.zygote.client import LOST_STATUS, Forked, Zygote, forkable
from harness.run.experiment import compose_experiment
from harness.run.lifecycle import emulated
from tests.helpers import root_only, run_pipeline, shared_run

PY = sys.executable
HERE = "/proc/self/ns/net"  # this process's own network namespace


def test_only_node_modules_with_plain_stdio_are_forked() -> None:
    assert forkable([PY, "-m", "harness.pipeline.node.server", "--x"], PY, {"stdout": 1})
    assert forkable([PY, "-m", "harness.techniques.reconfiguration.node.controller"], PY,
                    {"stdin": subprocess.PIPE, "text": True, "env": {}})
    assert not forkable([PY, "-m", "harness.stage"], PY, {})  # not a node module
    assert not forkable(["iperf3", "-s"], PY, {})
    assert not forkable(["/other/python", "-m", "harness.workload.node.sensor"], PY, {})
    assert not forkable([PY, "-m", "harness.workload.node.sensor"], PY,
                        {"preexec_fn": print})  # an option only an exec'd process has


@pytest.fixture
def zygote():
    z = Zygote(PY, dict(os.environ))
    yield z
    z.close()


@root_only
def test_exit_codes_pipes_and_signals_as_popen(zygote: Zygote) -> None:
    env = dict(os.environ)
    p = zygote.spawn([PY, "-m", "json.tool"], HERE, [], env, None, stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert p.communicate('{"a": [1, 2]}', timeout=20) == ('{\n    "a": [\n        1,\n'
                                                          '        2\n    ]\n}\n', None)
    assert p.returncode == 0
    p = zygote.spawn([PY, "-m", "json.tool"], HERE, [], env, None, stdin=subprocess.PIPE,
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate("not json", timeout=20)
    assert (p.returncode, out) == (1, "") and "Expecting value" in err
    p = zygote.spawn([PY, "-m", "no_such_module_here"], HERE, [], env, None,
                     stderr=subprocess.PIPE, text=True)
    assert p.wait(20) == 1 and "No module named no_such_module_here" in p.stderr.read()
    p = zygote.spawn([PY, "-m", "http.server", "0", "--bind", "127.0.0.1"], HERE, [], env,
                     None, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with pytest.raises(subprocess.TimeoutExpired):
        p.wait(0.3)
    assert p.poll() is None
    assert Path(f"/proc/{p.pid}/comm").read_text().strip() == "hx-server"
    p.send_signal(signal.SIGTERM)
    assert p.wait(20) == -signal.SIGTERM


@root_only
def test_a_node_that_is_not_there_is_named(zygote: Zygote) -> None:
    with pytest.raises(EmulationError, match="/proc/999999999/ns/net"):
        zygote.spawn([PY, "-m", "json.tool"], "/proc/999999999/ns/net", [], {}, None)
    with pytest.raises(EmulationError, match="joining /sys/fs/cgroup/hx-none-such"):
        zygote.spawn([PY, "-m", "json.tool"], HERE, ["/sys/fs/cgroup/hx-none-such/cgroup.procs"],
                     {}, None)


@root_only
def test_a_dead_zygote_is_said_not_hidden(zygote: Zygote) -> None:
    p = zygote.spawn([PY, "-m", "http.server", "0", "--bind", "127.0.0.1"], HERE, [],
                     dict(os.environ), None, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
    zygote.proc.kill()
    zygote.proc.wait(10)
    assert p.poll() is None  # its child lives on: the node's, until the node goes
    os.kill(p.pid, signal.SIGKILL)
    assert p.wait(20) == LOST_STATUS  # nobody could see how it ended: never a made-up -9
    with pytest.raises(EmulationError, match=r"zygote: exited \(-9\)"):
        zygote.spawn([PY, "-m", "json.tool"], HERE, [], {}, None)


@pytest.mark.needs_root
@root_only
def test_a_forked_node_process_is_its_nodes_and_the_runs() -> None:
    """In the node's network namespace and cgroup, marked with the run (`harness.clean`
    finds it), serving on the node's address: a probe echo answers an rtt from h2."""
    exp = compose_experiment("topology=pair", "network.delay_ms=2")
    with emulated(exp) as emu:
        h1, h2 = emu.nodes["h1"], emu.nodes["h2"]
        echo = h1.popen([h1.python, "-m", "harness.measure.node.probe", "echo", "--bind",
                         emu.ips["h1"], "--port", "7301", "--idle-s", "20"],
                        stdout=subprocess.PIPE, text=True)
        assert isinstance(echo, Forked)
        assert json.loads(echo.stdout.readline()) == {"listening": 7301}
        ns = Path(f"/proc/{echo.pid}/ns/net").stat().st_ino
        assert ns == Path(f"/proc/{h1.ns_pid}/ns/net").stat().st_ino
        assert ns != Path(HERE).stat().st_ino
        assert echo.pid in h1.resources.pids() and echo.pid not in h2.resources.pids()
        mark = f"{ENV_MARK}=".encode()
        env = Path(f"/proc/{echo.pid}/environ").read_bytes().split(b"\0")
        prefix = [e[len(mark):].decode() for e in env if e.startswith(mark)]
        assert prefix and prefix[0].startswith("hx"), prefix
        out = h2.run([h2.python, "-m", "harness.measure.node.probe", "rtt", emu.ips["h1"],
                      "--port", "7301", "--count", "20", "--interval-ms", "5"], timeout=30)
        rtt = json.loads(out)
        assert rtt["received"] == 20 and rtt["median_ms"] >= 4, rtt  # 2 x 2 ms
        echo.kill()
        assert echo.wait(10) == -signal.SIGKILL


def test_forked_stages_share_their_libraries_pages() -> None:
    """The same run with stages exec'd afresh: the same answers, every request accounted
    for, and each stage's proportional memory (PSS) larger by the libraries' pages a fork
    shares (measured: 49 vs 34 MiB p50)."""
    args = ("network.delay_ms=10", "workload.slo_ms=500", "run.duration_s=5", "seed=4")
    forked, df_f, _, _ = shared_run(*args)  # as test_pipeline_live's
    execd, df_e, _ = run_pipeline(*args, "backend.zygote=false")
    assert forked["config"]["backend"]["zygote"] is True
    assert execd["config"]["backend"]["zygote"] is False
    assert forked["accuracy"] == execd["accuracy"]
    assert len(df_f) == len(df_e)
    assert forked["stage_pss_mb"]["p50"] <= execd["stage_pss_mb"]["p50"] - 8, (
        forked["stage_pss_mb"], execd["stage_pss_mb"])
    # the footprint names the helpers each run had: one delay line each, a zygote (which
    # imported numpy, grpc and the stubs: a tenth of a second at least) only when forking
    fp, fe = forked["footprint"], execd["footprint"]
    assert fp["delay_line"]["n"] == fe["delay_line"]["n"] == 1, (fp, fe)
    assert fp["zygote"]["n"] == 1 and fp["zygote"]["cpu_s"] >= 0.1, fp
    assert fe["zygote"] == {"n": 0, "cpu_s": 0.0, "peak_rss_mb": 0.0}, fe


@pytest.mark.needs_root
@root_only
def test_a_node_with_a_memory_limit_starts_its_processes_afresh() -> None:
    """A fork's library pages stay charged to the zygote's cgroup: on a node whose memory
    is limited, the limit must count them as a device's memory would, so its processes
    are exec'd (a Popen) while an unlimited node's are forked."""
    exp = compose_experiment("topology=device_edge_cloud", "topology.edge_mem_mb=300")
    with emulated(exp) as emu:
        procs = {}
        for name in ("d1", "e1"):
            node = emu.nodes[name]
            procs[name] = node.popen([node.python, "-m", "harness.measure.node.probe", "echo",
                                      "--bind", emu.ips[name], "--port", "7302",
                                      "--idle-s", "20"], stdout=subprocess.PIPE, text=True)
        try:
            assert isinstance(procs["d1"], Forked)
            assert isinstance(procs["e1"], subprocess.Popen)
            for name, p in procs.items():
                assert json.loads(p.stdout.readline()) == {"listening": 7302}
                assert p.pid in emu.nodes[name].resources.pids()
        finally:
            for p in procs.values():
                p.kill()
                p.wait(10)
