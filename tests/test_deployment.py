"""The stages' and the controller's event files as the harness reads them (no root).

A `Deployment` needs no network to read its run's `stages/*.events.jsonl`; built with
`emu=None` on a temporary run directory. A failed reconfiguration is among the reasons
the run is INVALID (reading the files incrementally: tests/test_technique_events.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.pipeline.config import PipelineConfig
from harness.pipeline.deployment import Deployment
from harness.pipeline.instances import Instance
from harness.run.events import EventLog
from harness.run.inference import Inference


def append(path: Path, t: float, kind: str, target: str, **detail) -> None:
    with open(path, "a") as f:
        f.write(json.dumps({"t": t, "kind": kind, "target": target, **detail}) + "\n")


def deployment(tmp_path: Path) -> Deployment:
    dep = Deployment(None, PipelineConfig(), tmp_path, lambda *a, **k: None)
    dep.dir.mkdir(parents=True)
    return dep


def test_a_failed_reconfiguration_makes_the_run_invalid(tmp_path: Path) -> None:
    dep = deployment(tmp_path)
    events = EventLog()
    t0 = events.t0
    ctl = dep.dir / "controller.events.jsonl"
    append(ctl, t0 + 1.0, "detect", "10.0.0.5:8001", stage="middle")
    append(ctl, t0 + 1.5, "reconfigure.error", "10.0.0.7:8002", stage="middle", node="c1",
           upstream="10.0.0.3:8001", error="UNAVAILABLE: connection refused")
    append(dep.dir / "head@d1.events.jsonl", t0 + 0.9, "detect", "10.0.0.5:8001")
    load = Inference.__new__(Inference)  # only what merging the events needs
    load.deployment = dep
    emu = SimpleNamespace(ips={"d1": "10.0.0.3", "e1": "10.0.0.5", "c1": "10.0.0.7"})
    reasons = load._merge_technique_events(events, emu)
    assert reasons == ["reconfigure.error on c1: UNAVAILABLE: connection refused"]
    rows = [(r["t_s"], r["kind"], r["target"]) for r in events.rows]
    assert rows == [(0.9, "detect", "e1"), (1.0, "detect", "e1"),
                    (1.5, "reconfigure.error", "c1")]
    # a successful one is no reason
    ok = dep.dir / "controller.events.jsonl"
    ok.write_text(json.dumps({"t": t0 + 1.5, "kind": "reconfigure", "target": "10.0.0.7:8002",
                              "stage": "middle"}) + "\n")
    (dep.dir / "head@d1.events.jsonl").unlink()
    assert load._merge_technique_events(EventLog(), emu) == []


def test_a_restarted_instance_keeps_the_crashed_ones_log(tmp_path: Path) -> None:
    """A node's reboot starts its stage again: the log of the instance that crashed is
    what says why, so the new one appends after a marker line; a new instance that exits
    at once is reported by its own last line, not the old one's."""
    said = iter(["loaded the model", "boom: out of memory"])

    def popen(argv, stdout, stderr):
        return subprocess.Popen(["sh", "-c", f"echo '{next(said)}'; exit 3"],
                                stdout=stdout, stderr=stderr)

    node = SimpleNamespace(python=sys.executable, popen=popen,
                           resources=SimpleNamespace(oom_kills=lambda: 0))
    emu = SimpleNamespace(nodes={"e1": node}, ips={"e1": "127.0.0.1"},
                          topo=SimpleNamespace(node=lambda n: SimpleNamespace(
                              providers=["CPUExecutionProvider"], mem_mb=None)))
    dep = Deployment(emu, PipelineConfig(), tmp_path, lambda *a, **k: None)
    inst = Instance("middle", "e1", tmp_path / "middle.onnx", None, port=8001)
    dep.launch(inst)
    with pytest.raises(RuntimeError, match=r"exited \(3\): loaded the model$"):
        dep.wait_ready(inst, timeout_s=10)
    dep.launch(inst)  # what reboot() does for an instance whose process is gone
    with pytest.raises(RuntimeError, match=r"exited \(3\): boom: out of memory$"):
        dep.wait_ready(inst, timeout_s=10)
    lines = (dep.dir / "middle@e1.log").read_text().splitlines()
    assert lines[0] == "loaded the model" and lines[-1] == "boom: out of memory"
    assert len(lines) == 3 and "restarted" in lines[1], lines
