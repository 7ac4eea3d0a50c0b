"""Hydra callbacks (`hydra.callbacks` in conf/config.yaml): what runs when a sweep ends.

`on_multirun_end` runs in the process that launched the sweep, whichever launcher ran
the jobs (basic, joblib, Ray), after every job has ended or failed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


class SweepTable(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from harness.report.sweep import write_sweep_table

        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        log = logging.getLogger("harness")
        log.info("sweep table: %s", write_sweep_table(sweep_dir))
        try:  # the table stands even if the report cannot be made
            from harness.report.render import build

            log.info("sweep report: %s", build([sweep_dir], sweep_dir))
        except Exception as e:
            log.error("sweep report failed: %s: %s", type(e).__name__, e)
