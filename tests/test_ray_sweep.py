"""Sweeps as Ray tasks (`hydra/launcher=ray`), on a Ray cluster started here by
`ray start --head`, as a user starts each machine of a cluster."""

from __future__ import annotations

import atexit
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.emulation.ledger import leftovers, state_dir
from tests.helpers import PY, REPO, harness_cmd, root_only

pytestmark = [pytest.mark.needs_root, pytest.mark.slow, root_only]
RAY = str(Path(PY).parent / "ray")
# Ray 2.60 clusters started by `ray start` ask for its token; every client must send it
# The test cluster's own token (Ray 2.60 refuses `ray start` with token authentication
# and no token; a fresh machine has no ~/.ray/auth_token), for it and every client here.
TOKEN = Path(tempfile.mkdtemp(prefix="hxraytoken")) / "auth_token"
TOKEN.write_text(secrets.token_hex(32))
TOKEN.chmod(0o600)
atexit.register(shutil.rmtree, TOKEN.parent, True)
ENV = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0",
       "RAY_AUTH_TOKEN_PATH": str(TOKEN)}


def _session_pids(sid: int) -> list[int]:
    """Processes of one session: a cluster's, and only its (Ray workers make their own
    process groups, but not their own sessions)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


@pytest.fixture(scope="module")
def cluster():
    """A one-node Ray cluster offering one emulation slot; its address."""
    temp = tempfile.mkdtemp(prefix="hxray", dir="/tmp")  # short: Ray's sockets live here
    log = Path(temp) / "start.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [RAY, "start", "--head", "--block", "--port", "0", "--num-cpus", "2",
             "--resources", json.dumps({"hx_emulation": 1}), "--include-dashboard=false",
             "--disable-usage-stats", "--object-store-memory", "78643200",
             "--temp-dir", temp], stdout=out, stderr=subprocess.STDOUT, env=ENV,
            start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not (m := re.search(r"ray start --address='([^']+)'", log.read_text())):
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)
        yield m.group(1)
    finally:
        # a test cluster: 3 s to go on SIGTERM, then SIGKILL (its raylet took 15 s)
        for sig, wait_s in ((signal.SIGTERM, 3), (signal.SIGKILL, 5)):
            deadline = time.monotonic() + wait_s
            while (pids := _session_pids(proc.pid)) and time.monotonic() < deadline:
                for pid in pids:
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
                time.sleep(0.5)
        proc.wait(timeout=5)
        subprocess.run(["rm", "-rf", temp])


def _sweep(address: str, *overrides: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return harness_cmd("-m", "hydra/launcher=ray", f"hydra.launcher.ray.init.address={address}",
                       *overrides, env=ENV, timeout=timeout)


def test_a_sweep_runs_as_ray_tasks_one_emulation_at_a_time(cluster) -> None:
    p = _sweep(cluster, "technique=baseline,failover", "faults=edge_crash", "workload=digits",
               "topology=device_edge_cloud", "run.duration_s=3", "seed=1")
    assert p.returncode == 0, p.stderr[-3000:]
    sweep = Path(p.stdout.strip().splitlines()[-1])
    df = pd.read_csv(sweep / "sweep.csv")
    assert len(df) == 2
    assert list(df["verdict"]) == ["VALID"] * 2, list(df["reasons"])
    assert list(df["technique"]) == ["baseline", "failover"]
    # each job its own directory and network prefix; never two emulations at once here
    prefixes = {json.loads((Path(d) / "summary.json").read_text())["prefix"]
                for d in df["run_dir"]}
    assert len(prefixes) == 2
    assert list(df["concurrent_jobs"]) == [1, 1]
    spans = df.sort_values("started_at")
    assert (spans["started_at"].iloc[1:].values >= spans["ended_at"].iloc[:-1].values).all()
    assert set(df["host"]) == {platform.node()}
    assert df.loc[df["technique"] == "failover", "mttr_ms"].notna().all()
    assert (sweep / "report.md").is_file() and (sweep / "report.html").is_file()


def test_a_job_whose_ray_task_dies_fails_alone(cluster, tmp_path) -> None:
    before = set(state_dir().glob("hx*.json")) if state_dir().is_dir() else set()
    proc = subprocess.Popen(
        [PY, "-m", "harness", "-m", "hydra/launcher=ray",
         f"hydra.launcher.ray.init.address={cluster}", f"hydra.sweep.dir={tmp_path}",
         "topology=pair", "run.duration_s=3", "seed=1,2,3"],
        cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:  # a job's emulation after a first job ended: kill -9 its owner, the Ray worker
        deadline = time.monotonic() + 120
        while True:
            assert time.monotonic() < deadline, "no second job came up"
            assert proc.poll() is None, proc.communicate()
            done = {d.name for d in tmp_path.glob("*/summary.json")}
            new = set(state_dir().glob("hx*.json")) - before
            if len(done) == 1 and len(new) == 1:
                break
            time.sleep(0.2)
        ledger = json.loads(next(iter(new)).read_text())
        time.sleep(0.5)
        # Ray may start queued jobs in any order: the victim is the job dir with no summary
        running = [d.name for d in tmp_path.iterdir() if d.is_dir() and d.name.isdigit()
                   and not (d / "summary.json").exists()]
        assert len(running) == 1, running
        os.kill(ledger["owner_pid"], signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err[-3000:]
    df = pd.read_csv(tmp_path / "sweep.csv", dtype={"job": str}).set_index("job")
    victim = running[0]
    assert len(df) == 3
    assert df.loc[victim, "verdict"] == "FAILED"
    assert str(df.loc[victim, "reasons"]).startswith("Ray task died"), df.loc[victim, "reasons"]
    assert (df.drop(index=victim)["verdict"] == "VALID").all(), list(df["reasons"])
    assert (tmp_path / "report.md").is_file()
    prefix = next(iter(new)).name.removesuffix(".json")
    c = subprocess.run([PY, "-m", "harness.clean"], cwd=REPO, capture_output=True, text=True,
                       timeout=60)
    assert c.returncode == 0 and prefix in c.stdout, c.stdout + c.stderr
    assert not any(leftovers(prefix).values())


def test_a_cluster_without_emulation_slots_is_a_config_error(cluster, tmp_path) -> None:
    p = _sweep(cluster, "hydra.launcher.ray.remote.resources.hx_emulation=2",
               f"hydra.sweep.dir={tmp_path}/sweep", "topology=pair", "seed=1,2", timeout=60)
    assert p.returncode == 2, p.stderr[-2000:]
    err = [line for line in p.stderr.splitlines() if line.startswith("config error")]
    assert len(err) == 1 and "hydra.launcher.ray.remote.resources.hx_emulation=2" in err[0]
    assert not (tmp_path / "sweep").exists()


def test_a_local_ray_instance_records_jobs_that_ran_at_once(tmp_path) -> None:
    """No address: Ray starts in the sweep's process, here with two emulation slots, so
    the jobs overlap and the table and report say so."""
    p = harness_cmd("-m", "hydra/launcher=ray", "+hydra.launcher.ray.init.resources.hx_emulation=2",
                    f"hydra.sweep.dir={tmp_path}", "topology=pair", "run.duration_s=2",
                    "seed=1,2", env=ENV, timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    df = pd.read_csv(tmp_path / "sweep.csv")
    assert list(df["verdict"]) == ["VALID", "VALID"]
    assert list(df["concurrent_jobs"]) == [2, 2]
    assert "ran at once" in (tmp_path / "report.md").read_text()
