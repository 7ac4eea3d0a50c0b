"""Test helpers, in one place: composing the real config, running the harness as a user
does, reading a run's outputs, and what the harness could have left on the machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from harness.run.experiment import compose_experiment

REPO = Path(__file__).resolve().parent.parent
CONF = str(REPO / "conf")
SHARED_TRACES = REPO.parent / "shared" / "traces"
PY = sys.executable

root_only = pytest.mark.skipif(os.geteuid() != 0,
                               reason="needs root: network namespaces, tc, cgroups")


def compose_cfg(*overrides: str):  # the raw composed config (exp_for validates it too)
    with initialize_config_dir(CONF, version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


exp_for = compose_experiment


def harness_cmd(*args: str, **kw) -> subprocess.CompletedProcess:
    """`python -m harness ...` from the repo root, as a user runs it."""
    return entry("harness", *args, **kw)


def entry(module: str, *args: str, **kw) -> subprocess.CompletedProcess:
    """`python -m <module> ...` (harness, harness.report, harness.gate, ...) from the repo
    root, as a user runs it."""
    kw.setdefault("timeout", 120)
    return subprocess.run([PY, "-m", module, *args], cwd=REPO, capture_output=True,
                          text=True, **kw)


def run_dir(stdout: str) -> Path:
    """The run's (or sweep's) directory: the last line `python -m harness` prints."""
    lines = stdout.strip().splitlines()
    assert lines, "python -m harness printed nothing on stdout"
    path = Path(lines[-1])
    assert path.is_dir(), f"last stdout line is not a directory: {lines[-1]!r}"
    return path


def run_outputs(d: Path) -> tuple[dict, pd.DataFrame | None, pd.DataFrame]:
    """summary.json, requests.parquet (None without a workload), events.parquet."""
    summary = json.loads((d / "summary.json").read_text())
    req = d / "requests.parquet"
    return (summary, pd.read_parquet(req) if req.exists() else None,
            pd.read_parquet(d / "events.parquet"))


# A measured RTT median may sit this far below / above what the link is configured for,
# and its p90 this far above. Asymmetric on purpose: a busy neighbour (on CI, other VMs
# on the host too) only ever adds delay, never removes it; a delay line off by 1 ms or
# more per direction still fails. The contract's tight figures (median +-0.4, p99 <=
# +1.5 ms) are `make bench`'s, on a machine it has checked is quiet.
RTT_BELOW_MS, RTT_ABOVE_MS, RTT_P90_ABOVE_MS = 0.4, 1.5, 2.5


def rtt_median_ok(median_ms: float, expected_ms: float) -> bool:
    return -RTT_BELOW_MS <= median_ms - expected_ms <= RTT_ABOVE_MS


# A scheduled action (fault, restore) may start late by the injector thread's wake-up on a
# busy machine, never early: 100 ms late is far beyond a sleeping thread's delay and far below
# any schedule a defect would produce (a wrong clock or unit is off by seconds).
FAULT_LATE_S = 0.100


def on_time(t_s: float, planned_s: float) -> bool:
    return -0.001 <= t_s - planned_s <= FAULT_LATE_S


PIPELINE = ["topology=device_edge_cloud", "workload=digits", "technique=baseline"]


def run_pipeline(*overrides: str, valid: bool = True) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """One pipeline run (baseline unless overridden); checks the exit status matches the
    verdict and that every scheduled request has exactly one outcome."""
    p = harness_cmd(*PIPELINE, *overrides, timeout=300)
    assert p.returncode in (0, 1), p.stdout[-2000:] + p.stderr[-2000:]
    s, df, ev = run_outputs(run_dir(p.stdout))
    assert p.returncode == (0 if s["verdict"] == "VALID" else 1), (p.returncode, s["verdict"])
    if valid:
        assert s["verdict"] == "VALID", s["verdict_reasons"]
    assert df is not None
    accounting(s, df)
    return s, df, ev


def accounting(s: dict, df: pd.DataFrame) -> None:
    """Every scheduled request ends in exactly one outcome, and the counts add up."""
    assert s["n_scheduled"] == s["n_ok"] + s["n_late"] + s["n_failed"] + s["n_lost"]
    assert len(df) == s["n_scheduled"] == df["request_id"].nunique()
    assert set(df["status"]) <= {"ok", "late", "failed", "lost"}


def fault_events(ev: pd.DataFrame, action: str) -> pd.DataFrame:
    """The events of one fault action that really ran (not `fault.error`)."""
    return ev[ev["kind"] == f"fault.{action}"]


def machine_state() -> dict:
    """What the harness could have created: hx* namespaces, root links and state files.

    (Limited to the harness's own names so tests running beside other work are stable.)
    """
    def out(argv: list[str]) -> str:
        return subprocess.run(argv, capture_output=True, text=True).stdout

    links = sorted(line.split(":", 2)[1].strip() for line in
                   out(["ip", "-o", "link", "show"]).splitlines())
    state = Path("/run/harness")
    netns = [n for n in out(["ip", "netns", "list"]).split() if n.startswith("hx")]
    return {"netns": sorted(netns), "links": [n for n in links if n.startswith("hx")],
            "ledgers": sorted(p.name for p in state.glob("*.json")) if state.is_dir() else []}
