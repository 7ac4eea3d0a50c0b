"""Shared fixtures: composing the real Hydra config, and the root requirement."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from harness.experiment import compose_experiment

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
    kw.setdefault("timeout", 120)
    return subprocess.run([PY, "-m", "harness", *args], cwd=REPO, capture_output=True,
                          text=True, **kw)


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
