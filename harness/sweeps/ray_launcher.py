"""Sweep jobs as Ray tasks (`hydra/launcher=ray`): hydra-ray-launcher's RayLauncher,
with what an emulation needs from a cluster.

- One emulation per host at a time: every job asks for one unit of the custom
  resource `hx_emulation` and each Ray node offers as many as the emulations it may
  run at once (1: a busy neighbour perturbs timing). A local instance (no
  `init.address`) is started with `init.resources.hx_emulation` (default 1); a cluster
  that offers none is a config error, not a sweep that waits forever.
- A job whose Ray task dies (worker killed, node lost) fails alone: its directory
  gets `error.txt` and the sweep goes on, so `sweep.csv` still has every row. Ray does
  not retry it (`remote.max_retries: 0`): a retried emulation would overwrite the
  dead one's directory and hide that it died.
- Each job's directory is absolute, decided here: workers write to the same path,
  which must therefore be a filesystem every worker shares (README, "Sweeps on Ray").
- Ray's usage statistics stay off (RAY_USAGE_STATS_ENABLED=0): nothing of a run
  leaves the machine unless a user points the launcher at a cluster.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from hydra_plugins.hydra_ray_launcher.ray_launcher import RayLauncher
from omegaconf import DictConfig, OmegaConf, open_dict

from harness.core.files import write_text_atomic

RESOURCE = "hx_emulation"
OBJECT_STORE_BYTES = 78643200  # hydra-ray-launcher's default: Ray's own is a share of RAM
log = logging.getLogger("harness")


def config_error(message: str) -> None:
    print(f"config error: {message}", file=sys.stderr)
    sys.exit(2)


def connect(ray_cfg: DictConfig) -> dict[str, float]:
    """Start or join Ray; the cluster's resources. Exits 2 when no node can run a job."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    init: dict[str, Any] = OmegaConf.to_container(ray_cfg.init, resolve=True) or {}
    remote = OmegaConf.to_container(ray_cfg.remote, resolve=True) or {}
    need = float((remote.get("resources") or {}).get(RESOURCE, 0))
    address = init.get("address")
    if address is None:  # a Ray instance of this process: it offers what the config says
        init["resources"] = {RESOURCE: 1, **(init.get("resources") or {})}
        init.setdefault("object_store_memory", OBJECT_STORE_BYTES)
    elif init.get("resources"):
        config_error(f"hydra.launcher.ray.init.resources={init['resources']}: only for a "
                     f"local instance; with init.address={address!r} each node offers its "
                     "own (ray start --resources)")
    if not ray.is_initialized():
        try:
            ray.init(**init)
        except (ConnectionError, ValueError, RuntimeError) as e:
            config_error(f"hydra.launcher.ray.init.address={address!r}: "
                         f"{' '.join(str(e).split())} (a cluster with token authentication "
                         "also needs RAY_AUTH_MODE=token and its token here)")
    have = ray.cluster_resources()
    if need and have.get(RESOURCE, 0) < need:
        config_error(f"hydra.launcher.ray.remote.resources.{RESOURCE}={need:g}: the Ray "
                     f"cluster at {address or 'this machine'} offers "
                     f"{have.get(RESOURCE, 0):g} (start each worker with ray start "
                     f"--resources='{{\"{RESOURCE}\": 1}}')")
    return have


def _dead_job(job_dir: Path, overrides: Sequence[str], error: BaseException) -> JobReturn:
    """A job whose task died: recorded in its own directory, COMPLETED for Hydra, because
    Hydra's sweeper re-raises a FAILED job and would stop the sweep (and its table)."""
    job_dir.mkdir(parents=True, exist_ok=True)
    if not (job_dir / "summary.json").exists():
        write_text_atomic(job_dir / "error.txt",
                          f"Ray task died: {type(error).__name__}: "
                          f"{' '.join(str(error).split())[:500]}\n")
    ret = JobReturn(overrides=list(overrides), working_dir=str(job_dir),
                    status=JobStatus.COMPLETED)
    ret.return_value = 1
    return ret


class EmulationRayLauncher(RayLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        import ray
        from hydra_plugins.hydra_ray_launcher._launcher_util import launch_job_on_ray

        assert self.config and self.hydra_context and self.task_function
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        have = connect(self.ray_cfg)
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).resolve()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info("Ray: %d job(s) on %g host slot(s) (%s), sweep dir %s", len(job_overrides),
                 have.get(RESOURCE, 0), RESOURCE, sweep_dir)
        pending = []
        for idx, overrides in enumerate(job_overrides, initial_job_idx):
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config,
                                                                     list(overrides))
            with open_dict(cfg):
                cfg.hydra.job.id = f"ray_{idx}"
                cfg.hydra.job.num = idx
                cfg.hydra.sweep.dir = str(sweep_dir)
                job_dir = sweep_dir / str(cfg.hydra.sweep.subdir)
                ref = launch_job_on_ray(self.hydra_context, self.ray_cfg.remote, cfg,
                                        self.task_function, Singleton.get_state())
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            pending.append((ref, job_dir, overrides))
        returns = []
        for ref, job_dir, overrides in pending:
            try:
                returns.append(ray.get(ref))
            except Exception as e:  # RayTaskError, WorkerCrashedError, NodeDiedError...
                log.error("job %s: Ray task died: %s", job_dir.name, type(e).__name__)
                returns.append(_dead_job(job_dir, overrides, e))
        return returns
