"""Following the stages' event files while they grow (no root).

Several stages append to their own `*.events.jsonl` at once. Reading them by
position over their concatenation (as cold failover once did) skips a line
appended to an earlier file once a later one has grown.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from harness.pipeline.deployment import EventFiles
from harness.pipeline.instances import Instance
from harness.techniques.failover.technique import Failover


def append(path: Path, **ev) -> None:
    with open(path, "a") as f:
        f.write(json.dumps({"t": time.monotonic(), **ev}) + "\n")


def test_each_line_once_whichever_file_grew(tmp_path: Path) -> None:
    a, b = tmp_path / "head@d1.events.jsonl", tmp_path / "tail@c1.events.jsonl"
    r = EventFiles(tmp_path)
    append(b, kind="detect", target="x")
    assert [e["target"] for e in r.read_new()] == ["x"]
    append(a, kind="detect", target="y")  # an earlier file (by name) grows after
    append(b, kind="detect.up", target="x")
    assert sorted(e["target"] for e in r.read_new()) == ["x", "y"]
    assert r.read_new() == []


def test_a_line_being_written_waits(tmp_path: Path) -> None:
    f = tmp_path / "s@n.events.jsonl"
    r = EventFiles(tmp_path)
    f.write_text('{"kind": "detect", "tar')
    assert r.read_new() == []
    with open(f, "a") as fh:
        fh.write('get": "z"}\n')
    assert [e["target"] for e in r.read_new()] == ["z"]


class FakeDeployment:
    """What cold failover uses of a Deployment: events, a spec per stage, launching."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.launched: list[str] = []

    def event_reader(self) -> EventFiles:
        return EventFiles(self.folder)

    def technique_events(self) -> list[dict]:  # every line so far, files in name order
        return EventFiles(self.folder).read_new()

    def spec(self, stage: str):
        return SimpleNamespace(node={"middle": "e1", "tail": "c1"}[stage])

    def launch(self, inst: Instance) -> None:
        self.launched.append(inst.key)

    def wait_ready(self, inst: Instance) -> dict:
        t = time.monotonic()
        return {"t_spawn": t, "t_load": t, "t_loaded": t, "t_first_inference": t,
                "t_ready": t}


def test_cold_failover_sees_a_detection_in_an_earlier_file(tmp_path: Path) -> None:
    tech = Failover(mode="cold", replicas={"middle": "e2", "tail": "c2"})
    tech.ips = {"e1": "10.0.0.5", "c1": "10.0.0.7"}
    tech.plan = SimpleNamespace(port_of=lambda stage: 8001)  # a stage a node
    tech.cold = [Instance("middle", "e2", None, None, start=False),
                 Instance("tail", "c2", None, None, start=False)]
    dep = FakeDeployment(tmp_path)
    early, late = tmp_path / "head@d1.events.jsonl", tmp_path / "middle@e1.events.jsonl"
    events: list[tuple] = []
    watch = threading.Thread(target=tech._watch,
                             args=(dep, lambda *a, **k: events.append(a)), daemon=True)
    watch.start()
    try:
        append(late, kind="detect", target="10.0.0.7:8001")  # the tail's node
        deadline = time.monotonic() + 5
        while "tail@c2" not in dep.launched and time.monotonic() < deadline:
            time.sleep(0.01)
        append(late, kind="detect.up", target="10.0.0.7:8001")
        time.sleep(0.05)
        append(early, kind="detect", target="10.0.0.5:8001")  # the middle's, earlier file
        while "middle@e2" not in dep.launched and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        tech.stop()
        watch.join(timeout=5)
    assert dep.launched == ["tail@c2", "middle@e2"]
    assert [e[0] for e in events] == ["recover.start_replica"] * 2
