"""A fleet (topology=fleet pipeline=fleet): one head per device on its own path, many stage
processes, their memory. Placement and bad input without root; a small fleet live."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.core.config import ConfigError
from harness.measure.live import memory
from harness.pipeline.instances import placed, primaries
from tests.helpers import (
    CONF,
    PY,
    REPO,
    accounting,
    exp_for,
    harness_cmd,
    root_only,
    run_dir,
    run_outputs,
)

FLEET = ["topology=fleet", "pipeline=fleet", "workload=digits", "technique=baseline"]
FILES = {"head": Path("h.onnx"), "rest": Path("r.onnx"), "middle": Path("m.onnx"),
         "tail": Path("t.onnx"), "full": Path("f.onnx"), "front": Path("fr.onnx")}


def test_every_device_runs_the_head_on_its_own_path() -> None:
    exp = exp_for(*FLEET, "topology.n_edges=3", "topology.devices_per_edge=4")
    pipe, topo = exp.plan, exp.topology
    devices = [n.name for n in topo.nodes if n.role == "device"]
    assert pipe.placement.nodes == {"head": devices, "rest": ["e1", "e2", "e3"]}
    ips = topo.addresses()
    inst = placed(pipe, FILES, ips)
    assert len(inst) == pipe.n_placed() == 12 + 3
    for i in inst:
        if i.stage == "head":  # d1-d4 on e1, d5-d8 on e2, ...
            home = f"e{(int(i.node[1:]) - 1) // 4 + 1}"
            assert topo.find_link(i.node, home) is not None
            assert i.route.targets == [f"{ips[home]}:{exp.pipeline.port}"]
            assert i.route.inputs == ["h"]
        else:
            assert i.route is None
    for k in range(1, 13):  # each camera feeds its own device's head
        assert pipe.placement.next_node("head", f"s{k}") == f"d{k}"


# har is not a chain of digits stages: its join is placed as tests/test_join.py checks
@pytest.mark.parametrize("pipeline", sorted(p.stem for p in (Path(CONF) / "pipeline")
                                            .glob("*.yaml") if p.stem not in ("fleet", "har")))
def test_a_pipeline_without_roles_is_placed_as_before(pipeline: str) -> None:
    exp = exp_for("topology=device_edge_cloud", "workload=digits", f"pipeline={pipeline}")
    pipe, ips = exp.plan, exp.topology.addresses()
    assert not pipe.fleet and pipe.n_placed() == len(pipe.stages)
    assert placed(pipe, FILES, ips) == primaries(pipe, FILES, pipe.routes(ips))


@pytest.mark.parametrize("overrides,key", [
    (["topology.devices_per_edge=0"], "topology.devices_per_edge=0"),
    (["topology.devices_per_edge=-1"], "topology.devices_per_edge=-1"),
    (["topology.devices_per_edge=abc"], "topology.devices_per_edge='abc'"),
    (["topology.n_edges=0"], "topology.n_edges=0"),
    (["topology.n_edges=20", "topology.devices_per_edge=30"], "topology.devices_per_edge=30"),
    (["+topology.bogus=1"], "topology.bogus=1"),
    (["topology.cloud=false"], "topology.cloud=False"),
    (["topology.device_cpu=-1"], "topology.device_cpu=-1"),
    (["pipeline.stages.0.role=robot"], "pipeline.stages[0].role='robot'"),
    (["pipeline.stages.1.role=device"], "pipeline.stages[1].role='device'"),
    (["+pipeline.stages.0.node=d1"], "pipeline.stages[0].role='device'"),
    (["technique=failover"], "pipeline.stages[0].role='device'"),
    (["topology=pair", "workload.sensors=[h1]"], "pipeline.stages[0].role='device'"),
])
def test_bad_fleet_config_names_key_and_value(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError) as e:
        exp_for(*FLEET, *overrides)
    assert str(e.value).startswith(key), str(e.value)


def test_memory_of_a_stage_process_found_behind_its_launcher(tmp_path: Path) -> None:
    """A launcher (as nsenter is for a container node) whose child runs the server."""
    script = tmp_path / "launcher.py"
    script.write_text("import subprocess, sys\n"
                      "subprocess.run([sys.executable, '-c', 'import time; time.sleep(30)', "
                      "'harness.pipeline.node.server'])\n")
    launcher = subprocess.Popen([sys.executable, str(script)])
    pid = None
    try:
        deadline = time.monotonic() + 10
        while pid is None and time.monotonic() < deadline:
            pid = memory.stage_pid(launcher.pid)
            time.sleep(0.01)
        assert pid is not None and pid != launcher.pid
        m = memory.snapshot({"x@n": launcher})["x@n"]
        assert m["pid"] == pid and 0 < m["uss_mb"] <= m["rss_mb"] <= m["hwm_mb"]
        assert 0 < m["pss_mb"] <= m["rss_mb"]
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        launcher.kill()
        launcher.wait()


def test_memory_summary_and_warning() -> None:
    def m(rss: float) -> dict:
        return {"rss_mb": rss, "hwm_mb": rss + 1, "pss_mb": rss / 2, "uss_mb": rss / 3,
                "shared_file_mb": 40.0}

    fields, warnings = memory.summarize({"a@d1": m(50), "b@d2": m(70)}, {"a@d1": m(55)})
    assert fields["stage_rss_mb"]["n"] == 2 and fields["stage_rss_mb"]["max"] == 71
    assert fields["stage_pss_mb"]["total"] == pytest.approx(27.5 + 35)
    assert len(warnings) == 1 and "71 MiB > 60 MiB" in warnings[0]
    assert memory.summarize({"a@d1": m(40)}, {})[1] == []
    assert memory.summarize({}, {})[0]["stage_rss_mb"] is None


@root_only
@pytest.mark.needs_root
def test_bad_fleet_config_exit_2_before_the_network() -> None:
    """Exit 2 with one line, and no run state ever created by that process (watched while
    it runs: other runs on this machine may start and end meanwhile)."""
    p = subprocess.Popen([PY, "-m", "harness", *FLEET, "topology.devices_per_edge=-1"],
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    owned = set()
    while p.poll() is None:
        for f in Path("/run/harness").glob("*.json"):
            try:
                if json.loads(f.read_text())["owner_pid"] == p.pid:
                    owned.add(f.stem)
            except (OSError, ValueError, KeyError):
                pass
        time.sleep(0.01)
    out, err = p.communicate()
    assert p.returncode == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines == ["config error: topology.devices_per_edge=-1: must be >= 1"], err
    assert not owned and not out.strip()


@root_only
@pytest.mark.needs_root
def test_small_fleet_every_device_serves_its_camera() -> None:
    p = harness_cmd(*FLEET, "topology.devices_per_edge=4", "workload.rate_hz=5",
                    "run.duration_s=3", "faults=none", timeout=300)
    d = run_dir(p.stdout)
    s, df, ev = run_outputs(d)
    assert p.returncode == 0 and s["verdict"] == "VALID", s["verdict_reasons"]
    accounting(s, df)
    assert s["n_scheduled"] == 8 * 5 * 3
    assert s["stage_instances"] == 10 and s["replicas"] == 0
    assert s["accuracy"] == pytest.approx(s["reference_accuracy"], abs=1e-12)
    answered = df.dropna(subset=["path"])
    assert set(answered["sensor"]) == {f"s{k}" for k in range(1, 9)}
    for sensor, path in zip(answered["sensor"], answered["path"], strict=True):
        k = int(sensor[1:])
        assert path == f"d{k}:head>e{(k - 1) // 4 + 1}:rest"
    assert len(ev[ev["kind"] == "stage.ready"]) == 10
    assert s["stages_ready_s"] > 0
    for field in ("stage_rss_mb", "stage_pss_mb", "stage_uss_mb"):
        assert s[field]["n"] == 10 and 0 < s[field]["p50"] <= s[field]["max"]
    per = json.loads((d / "stages" / "memory.json").read_text())
    assert sorted(per) == sorted([f"head@d{k}" for k in range(1, 9)] + ["rest@e1", "rest@e2"])
    assert all(v["ready"]["rss_mb"] > 0 and v["end"]["hwm_mb"] >= v["ready"]["rss_mb"]
               for v in per.values())
