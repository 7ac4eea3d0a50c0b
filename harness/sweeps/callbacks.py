"""Hydra callbacks (`hydra.callbacks` in conf/config.yaml): what runs when a sweep starts
and ends.

`on_multirun_end` runs in the process that launched the sweep, whichever launcher ran
the jobs (basic, joblib, Ray), after every job has ended or failed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness.core import access
from harness.core.paths import RESULTS_DIR

# The last sweep's directory, for the exit status of `python -m harness -m`: with a
# launcher that runs jobs in other processes (Ray) its jobs are known only from disk.
LAST_SWEEP: dict[str, Path] = {}


class SweepLifecycle(Callback):
    """Checks a sweep's launcher before it starts; its table and report when it ends, then
    who may read the sweep's directory (`results.readable_by`, as its jobs)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """A Ray cluster that cannot run the jobs is bad input: said (exit 2) before Hydra
        writes anything into the sweep's directory."""
        if str(config.hydra.launcher.get("_target_", "")).endswith("EmulationRayLauncher"):
            from harness.sweeps.ray_launcher import connect

            connect(config.hydra.launcher.ray)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from harness.report.sweep import write_sweep_table

        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        if not sweep_dir.is_dir():
            return
        LAST_SWEEP["dir"] = sweep_dir
        log = logging.getLogger("harness")
        log.info("sweep table: %s", write_sweep_table(sweep_dir))
        try:  # the table stands even if the report cannot be made
            from harness.report.render import build

            log.info("sweep report: %s", build([sweep_dir], sweep_dir))
        except Exception as e:
            log.error("sweep report failed: %s: %s", type(e).__name__, e)
        access.apply(sweep_dir, readable_by(config), opens_up_to=RESULTS_DIR)


def readable_by(config: DictConfig) -> str:
    """The sweep's `results.readable_by`; root alone when it is not a valid single value
    (a job said so already, exit 2)."""
    value = (config.get("results") or {}).get("readable_by", access.PRIVATE)
    return value if isinstance(value, str) and value in access.READABLE_BY else access.PRIVATE
