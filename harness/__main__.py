"""`python -m harness [overrides]`: the Hydra app.

Bad input (a config that does not compose, a value out of range, a reference
to an unknown node) prints one line naming the key and exits 2 before the
network is touched. In a multirun sweep a failing job records its error in
its own directory and the sweep goes on.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from harness.config import ConfigError

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
EXIT_CONFIG = 2
FAILED_JOBS: list[tuple[str, int]] = []  # (job dir, exit code) of failed sweep jobs


def precheck(overrides: list[str]) -> None:
    """Compose and validate before Hydra creates a run dir: bad input exits 2, one line."""
    from hydra import compose, initialize_config_dir

    from harness.experiment import load_experiment

    try:
        with initialize_config_dir(CONF_DIR, version_base="1.3"):
            cfg = compose("config", overrides=overrides, return_hydra_config=True)
        load_experiment(cfg, dict(cfg.hydra.runtime.choices))
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    except Exception as e:  # Hydra's own composition errors span lines; keep one
        print(f"config error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def task(cfg: DictConfig) -> None:
    from harness.experiment import load_experiment
    from harness.run import execute

    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    try:
        exp = load_experiment(cfg, dict(hc.runtime.choices))
        code = execute(exp, out_dir, interactive=exp.mode == "cli")
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        (out_dir / "error.txt").write_text(f"config error: {e}\n")
        if not multirun:
            sys.exit(EXIT_CONFIG)
        FAILED_JOBS.append((str(out_dir), EXIT_CONFIG))
        return
    except Exception as e:
        (out_dir / "error.txt").write_text(traceback.format_exc())
        logging.getLogger("harness").error("run failed: %s: %s", type(e).__name__, e)
        if not multirun:
            sys.exit(1)
        FAILED_JOBS.append((str(out_dir), 1))
        return
    if code and not multirun:
        sys.exit(code)


def main() -> None:
    args = sys.argv[1:]
    if not any(a in ("-m", "--multirun") or a.startswith("-") for a in args):
        precheck(args)
    task()
    if FAILED_JOBS:  # the sweep finished its other jobs; its exit status still says so
        print(f"{len(FAILED_JOBS)} job(s) failed: " + ", ".join(d for d, _ in FAILED_JOBS),
              file=sys.stderr)
        sys.exit(max(c for _, c in FAILED_JOBS))


if __name__ == "__main__":
    main()
