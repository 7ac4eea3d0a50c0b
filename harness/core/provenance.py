"""Where a result came from: code, machine and software, so two results can be told apart.

Every summary and report carries this (`provenance`): the git commit and whether the
tree had uncommitted changes, the kernel, CPU model and core count, Python and the
versions of the packages that shape the numbers. Read once per process.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version

from harness.core.paths import REPO

PACKAGES = ("onnxruntime", "grpcio", "numpy", "pandas", "hydra-core", "mininet", "docker",
            "tritonclient")


def _git(*args: str) -> str | None:
    try:
        p = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                           timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


@functools.cache
def provenance() -> dict:
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "host": platform.node(),  # which machine of a cluster sweep ran the job
        "kernel": platform.release(),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "packages": {p: _version(p) for p in PACKAGES},
    }
