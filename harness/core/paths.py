"""Where the repository is: model paths and conf/ are relative to it."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONF_DIR = REPO / "conf"
RESULTS_DIR = REPO / "results"  # runs, sweeps, benches (unless hydra.run.dir says elsewhere)
