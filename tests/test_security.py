"""Security properties, over the code and on live runs.

- No config value ever reaches a shell: every process is started from an argument
  list (the source is read with `ast`; no root).
- Containers are unprivileged: what the Docker backend asks the daemon for (no root,
  no daemon: the SDK's client is replaced).
- Stage servers listen on their node's emulated address only (a live run: every
  namespace of the run, read from /proc).
- A run's outputs and the state file are readable by root alone unless
  `results.readable_by` says otherwise.

One file past 300 lines on purpose: the live checks share one run (a module fixture),
and each property is a few lines beside the others it is read with.
"""

from __future__ import annotations

import ast
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.core import access
from harness.core.files import write_text_atomic
from harness.pipeline.routing import LEAN_PORT_OFFSET
from tests.helpers import (
    PIPELINE,
    REPO,
    during_run,
    entry,
    exp_for,
    harness_cmd,
    namespaces_listening,
    root_only,
    servers_by_node,
)

SCANNED = ("harness", "topologies", "hydra_plugins")
SHELLS = {"sh", "bash", "dash", "ash", "ksh", "zsh"}
BANNED = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput",
          "asyncio.create_subprocess_shell"}
# Mininet's Host.cmd/sendCmd write a string to the host's bash
BANNED_METHODS = {"cmd", "sendCmd", "cmdPrint"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _is_shell_c(a: ast.AST, b: ast.AST) -> bool:
    """`sh -c`, `bash -ec`, `/bin/sh -xc`, ...: a shell told to run a string."""
    if not (isinstance(a, ast.Constant) and isinstance(b, ast.Constant)
            and isinstance(a.value, str) and isinstance(b.value, str)):
        return False
    flag = b.value
    return (a.value.rsplit("/", 1)[-1] in SHELLS and flag.startswith("-")
            and not flag.startswith("--") and "c" in flag)


def shell_uses(source: str, name: str = "<code>") -> list[str]:
    """Every place in `source` that could hand a string to a shell."""
    out = []
    banned_names = {b.rsplit(".", 1)[1] for b in BANNED}
    for node in ast.walk(ast.parse(source)):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        seqs: list[list[ast.expr]] = []
        if isinstance(node, ast.ImportFrom) and node.module in ("os", "subprocess", "asyncio"):
            out += [f"{where}: from {node.module} import {a.name}" for a in node.names
                    if a.name in banned_names]
        elif isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant)
                                              and kw.value.value is False):
                    out.append(f"{where}: shell={ast.unparse(kw.value)}")
            called = _dotted(node.func)
            if called in BANNED:
                out.append(f"{where}: {called}()")
            elif isinstance(node.func, ast.Attribute) and node.func.attr in BANNED_METHODS:
                out.append(f"{where}: .{node.func.attr}() (a string to Mininet's bash)")
            seqs.append(node.args)
        elif isinstance(node, ast.List | ast.Tuple):
            seqs.append(node.elts)
        for seq in seqs:
            out += [f"{where}: {a.value} {b.value} (a shell running a string)"
                    for a, b in zip(seq, seq[1:], strict=False) if _is_shell_c(a, b)]
    return out


@pytest.mark.parametrize("snippet", [
    "subprocess.run(cmd, shell=True)",
    "subprocess.Popen(cmd, shell=flag)",
    "os.system('ip link')",
    "os.popen(cmd)",
    "subprocess.getoutput(cmd)",
    "subprocess.getstatusoutput(cmd)",
    "from os import system",
    "from subprocess import getoutput",
    "run(['sh', '-c', script])",
    "run(['ip', 'netns', 'exec', ns, 'sh', '-ec', script])",
    "node.popen([*enter, '/bin/bash', '-lc', script])",
    "os.execl('/bin/sh', 'sh', '-c', script)",
    "host.cmd('ping -c1 ' + ip)",
])
def test_the_check_finds_every_way_to_a_shell(snippet: str) -> None:
    assert shell_uses(snippet), snippet


@pytest.mark.parametrize("snippet", [
    "subprocess.run(['ip', 'link'], shell=False)",
    "subprocess.run([sys.executable, '-c', 'print(1)'])",
    "subprocess.run(['iperf3', '-c', ip, '-p', '5201'])",
    "subprocess.run(['bash', script_file])",
    "subprocess.run(['sh', '--version'])",
])
def test_the_check_leaves_argument_lists_alone(snippet: str) -> None:
    assert not shell_uses(snippet), snippet


def test_no_config_value_reaches_a_shell() -> None:
    """Processes start from argument lists only: a value (a node name, a path, a model
    file, an image command) is one argument, never shell text."""
    found = []
    for top in SCANNED:
        for f in sorted((REPO / top).rglob("*.py")):
            found += shell_uses(f.read_text(), str(f.relative_to(REPO)))
    assert not found, "\n".join(found)


# ---- containers ----------------------------------------------------------------------


def test_containers_are_unprivileged(monkeypatch, tmp_path: Path) -> None:
    """Node containers and image stages: no privilege, no capability but SYS_NICE (node
    containers: the sensors' real-time replay), no new privileges, none of the host's
    namespaces, the repository read-only and nothing writable but the run's folder."""
    from harness.emulation.backends import docker as backend
    from harness.emulation.topology import Node

    created = []

    def run(image, command, **kwargs):
        created.append(kwargs)
        return SimpleNamespace(id="c0ffee", image=SimpleNamespace(attrs={"Config": {}}))

    client = SimpleNamespace(containers=SimpleNamespace(run=run))
    monkeypatch.setattr(backend.engine, "client", lambda: client)
    monkeypatch.setattr(backend, "DockerNode", lambda *a, **k: SimpleNamespace())
    b = backend.DockerBackend()
    b.share(str(tmp_path))
    b.start_node(Node("e1", "edge", cpu=1, mem_mb=256), "10.0.0.2",
                 SimpleNamespace(prefix="hx000000"))
    b.prefix = "hx000000"
    holder = SimpleNamespace(name="e1", container=SimpleNamespace(id="c0ffee"))
    b.run_image(holder, "tail@e1", "img", ["serve", "--host", "127.0.0.1"], {})
    assert len(created) == 2
    for kw in created:
        assert not kw.get("privileged", False)
        assert kw["cap_drop"] == ["ALL"]
        assert set(kw.get("cap_add") or []) <= {"SYS_NICE"}
        assert "no-new-privileges" in kw["security_opt"]
        assert kw["network_mode"] in ("none", "container:c0ffee")
        for ns in ("pid_mode", "ipc_mode", "userns_mode", "uts_mode", "cgroupns"):
            assert kw.get(ns) in (None, "private"), (ns, kw.get(ns))
        assert not kw.get("devices") and not kw.get("device_requests")
        assert kw["pids_limit"] > 0
        vols = kw["volumes"]
        assert vols[str(REPO)]["mode"] == "ro"
        assert {p for p, v in vols.items() if v["mode"] != "ro"} == {str(tmp_path)}


# ---- files: a run's outputs and the state file ---------------------------------------


def _modes(top: Path) -> dict[str, int]:
    out = {".": stat.S_IMODE(top.stat().st_mode)}
    for f in top.rglob("*"):
        if not f.is_symlink():
            out[str(f.relative_to(top))] = stat.S_IMODE(f.stat().st_mode)
    return out


@pytest.mark.parametrize("readable_by,dirs,files", [
    ("root", 0o700, 0o600), ("group", 0o750, 0o640), ("all", 0o755, 0o644)])
def test_access_modes(readable_by: str, dirs: int, files: int, tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    old = os.umask(0o022)
    try:
        run = tmp_path / "results" / "runs" / "r"
        (run / "stages").mkdir(parents=True)
        (run / "summary.json").write_text("{}")
        (run / "stages" / "a.log").write_text("")
        tool = run / "tool"
        tool.write_text("")
        tool.chmod(0o755)
        (tmp_path / "results").chmod(0o700)  # made private by an earlier run
        access.apply(run, readable_by, opens_up_to=tmp_path / "results")
        modes = _modes(run)
        assert {k: v for k, v in modes.items() if k != "tool"} == {
            ".": dirs, "stages": dirs, "summary.json": files, "stages/a.log": files}
        assert modes["tool"] == dirs  # executable stays executable, for whom may read
        (run / "later.json").write_text("")  # the umask now says the same
        assert stat.S_IMODE((run / "later.json").stat().st_mode) == files
        up = stat.S_IMODE((tmp_path / "results").stat().st_mode)
        assert up == (0o700 if readable_by == "root" else dirs)  # opened, never closed
        assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700  # above: left alone
    finally:
        os.umask(old)


def test_state_file_is_root_only_whatever_the_umask(monkeypatch, tmp_path: Path) -> None:
    from harness.emulation.ledger import Ledger

    monkeypatch.setenv("HARNESS_STATE_DIR", str(tmp_path / "state"))
    old = os.umask(0o000)
    try:
        led = Ledger.new()
        write_text_atomic(tmp_path / "x", "", mode=0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE(led.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(led.path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "x").stat().st_mode) == 0o600


def test_bench_rejects_a_bad_readable_by() -> None:
    p = entry("harness.bench", "results.readable_by=world", timeout=60)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        "bench error: results.readable_by='world': must be one of root, group, all"]


# ---- a live run ----------------------------------------------------------------------

LIVE = [*PIPELINE, "technique=failover", "faults=none", "run.duration_s=3"]


@pytest.fixture(scope="module")
def live_run(tmp_path_factory) -> tuple[Path, dict]:
    """A warm-failover pipeline run (stages on d1, e1, its replica's e2, c1; sensors),
    seen from the outside while its requests flow."""
    from harness.emulation.ledger import state_dir

    out = tmp_path_factory.mktemp("security") / "run"

    def look(prefix: str) -> dict:
        state = state_dir() / f"{prefix}.json"
        return {"namespaces": namespaces_listening(prefix),
                "state_mode": stat.S_IMODE(state.stat().st_mode)}

    code, output, seen = during_run([*LIVE, f"hydra.run.dir={out}"], look)
    assert code == 0, output[-3000:]
    return out, seen


@root_only
@pytest.mark.needs_root
def test_stage_servers_listen_on_their_node_address_only(live_run) -> None:
    """Not on 0.0.0.0, ::, loopback or another address: a stage is reachable over its
    node's emulated links and nowhere else (sensors, the delay line: nothing listens).
    A stage's two ports: KServe v2 gRPC and the lean hop (+ LEAN_PORT_OFFSET)."""
    ips = exp_for(*LIVE).topology.addresses()
    port = exp_for(*LIVE).pipeline.port
    assert exp_for(*LIVE).pipeline.hop == "lean"
    assert servers_by_node(live_run[1]["namespaces"], ips) == {
        n: {("tcp", ips[n], port), ("tcp", ips[n], port + LEAN_PORT_OFFSET)}
        for n in ("d1", "e1", "e2", "c1")}


@root_only
@pytest.mark.needs_root
def test_a_runs_outputs_and_state_file_are_root_only(live_run) -> None:
    out, seen = live_run
    assert seen["state_mode"] == 0o600
    modes = _modes(out)
    for sub in (".hydra", "stages", "sensors", "partitions", "summary.json",
                "requests.parquet", "events.parquet", "__main__.log"):
        assert sub in modes, sub  # written by the harness, Hydra and the node processes
    wrong = {k: oct(v) for k, v in modes.items()
             if v != (0o700 if (out / k).is_dir() else 0o600)}
    assert not wrong, wrong


@root_only
@pytest.mark.needs_root
@pytest.mark.parametrize("sweep,readable_by,dirs,files", [
    (False, "all", 0o755, 0o644), (True, "group", 0o750, 0o640)])
def test_readable_by_opens_a_run_and_a_sweep(sweep: bool, readable_by: str, dirs: int,
                                             files: int, tmp_path: Path) -> None:
    out = tmp_path / "out"
    where = ["-m", "seed=1,2", f"hydra.sweep.dir={out}"] if sweep else [f"hydra.run.dir={out}"]
    p = harness_cmd(*where, "topology=pair", "run.duration_s=0.5",
                    f"results.readable_by={readable_by}")
    assert p.returncode == 0, p.stderr[-2000:]
    modes = _modes(out)
    job = "0/" if sweep else ""
    assert f"{job}summary.json" in modes and f"{job}.hydra/config.yaml" in modes
    if sweep:
        assert "sweep.csv" in modes and "report.md" in modes  # the callback's, at the end
    wrong = {k: oct(v) for k, v in modes.items() if v != (dirs if (out / k).is_dir() else files)}
    assert not wrong, wrong
