"""`python -m harness [overrides]`: the Hydra app.

Bad input (a config that does not compose, a value out of range, a reference
to an unknown node) prints one line naming the key and exits 2 before the
network is touched. In a multirun sweep a failing job records its error in
its own directory and the sweep goes on.

Exit status: 0 when every run is VALID, 1 when one is INVALID or failed, 2 for
bad input. The last line on stdout is the run's directory (a sweep's: the
sweep's directory), so scripts need not parse the log. What a run writes is
root's alone unless `results.readable_by` opens it (`harness.core.access`).
"""

from __future__ import annotations

import logging
import sys
import traceback
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from harness.core import access
from harness.core.config import ConfigError
from harness.core.files import write_text_atomic
from harness.core.paths import CONF_DIR, RESULTS_DIR
from harness.run.experiment import (  # also registers the config resolvers
    check_overrides,
    load_experiment,
)

EXIT_CONFIG = 2
JOBS: list[tuple[Path, int]] = []  # (job dir, exit code: 0 VALID, 1 INVALID or failed, 2 bad input)
SWEEP = {"multirun": False}


def precheck(overrides: list[str]) -> None:
    """Compose and validate before Hydra creates a run dir: bad input exits 2, one line."""
    try:
        check_overrides(overrides)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def task(cfg: DictConfig) -> int:
    from harness.run.phases import execute

    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir).resolve()
    SWEEP["multirun"] = hc.mode == RunMode.MULTIRUN
    readable_by = access.PRIVATE  # until the config says otherwise
    access.apply(out_dir, readable_by)  # made before this ran, by a Ray worker's umask too
    try:
        exp = load_experiment(cfg, dict(hc.runtime.choices))
        readable_by = exp.results.readable_by
        access.apply(out_dir, readable_by, opens_up_to=RESULTS_DIR)
        code = execute(exp, out_dir, interactive=exp.mode == "cli")
    except (KeyboardInterrupt, SystemExit):  # a signal: the run recorded what it had
        print(out_dir, flush=True)
        raise
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        write_text_atomic(out_dir / "error.txt", f"config error: {e}\n")
        code = EXIT_CONFIG
    except Exception as e:  # the job failed; a sweep goes on with its other jobs
        write_text_atomic(out_dir / "error.txt", traceback.format_exc())
        logging.getLogger("harness").error("run failed: %s: %s", type(e).__name__, e)
        code = 1
    access.apply(out_dir, readable_by)  # whatever a node's process made with its own umask
    JOBS.append((out_dir, code))
    return code  # a launcher running jobs elsewhere (Ray) hands it back as the job's return


def sweep_codes(sweep_dir: Path) -> list[tuple[Path, int]]:
    """Exit codes of a sweep's jobs from its table (jobs that ran in other processes)."""
    import pandas as pd

    codes = []
    for r in pd.read_csv(sweep_dir / "sweep.csv").to_dict("records"):
        code = 0 if r["verdict"] == "VALID" else 1
        if str(r.get("reasons") or "").startswith("config error"):
            code = EXIT_CONFIG
        codes.append((Path(str(r["run_dir"])), code))
    return codes


def main() -> None:
    access.use(access.PRIVATE)  # Hydra makes the run's directory before any config is read
    args = sys.argv[1:]
    if not any(a in ("-m", "--multirun") or a.startswith("-") for a in args):
        precheck(args)
    # conf/hydra/launcher/ray.yaml replaces the plugin's preset of the same name on
    # purpose; Hydra warns about that on every sweep
    warnings.filterwarnings("ignore", message=r"\n'hydra/launcher/ray' is validated against")
    task()
    from harness.sweeps.callbacks import LAST_SWEEP

    if not JOBS and "dir" in LAST_SWEEP:  # the jobs ran in other processes (Ray)
        SWEEP["multirun"] = True
        JOBS.extend(sweep_codes(LAST_SWEEP["dir"]))
    if not JOBS:  # --help, --cfg and the like
        return
    failed = [(d, c) for d, c in JOBS if c]
    if SWEEP["multirun"]:
        if failed:  # the sweep finished its other jobs; its exit status still says so
            print(f"{len(failed)} of {len(JOBS)} job(s) failed or INVALID: "
                  + ", ".join(str(d) for d, _ in failed), file=sys.stderr)
        print(JOBS[0][0].parent, flush=True)  # the sweep's dir: one numbered dir per job
    else:
        print(JOBS[0][0], flush=True)  # machine-readable: the run's dir is the last line
    sys.exit(max((c for _, c in JOBS), default=0))


if __name__ == "__main__":
    main()
