"""Two runs started in the same second keep their results apart (root).

Run directories were named by the second alone: a gate calibration and a measurement
started together wrote into one directory, and each read the other's sensor records
(requests answered by a replica the run did not have, at 8 % accuracy).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.helpers import PY, REPO, root_only


@pytest.mark.needs_root
@root_only
def test_runs_started_together_get_directories_of_their_own() -> None:
    cmd = [PY, "-m", "harness", "topology=pair", "run.duration_s=0.5"]
    procs = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    dirs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-500:]
        dirs.append(out.strip().splitlines()[-1])
    assert dirs[0] != dirs[1], dirs
    for d, p in zip(dirs, procs, strict=True):
        summary = json.loads((REPO / d / "summary.json").read_text())
        assert summary["verdict"] == "VALID" and d.endswith(f"_{p.pid}")
