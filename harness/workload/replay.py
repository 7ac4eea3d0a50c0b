"""Running the schedule: one sensor process per sensor node, then every request accounted for.

The harness hands each sensor its slice of the schedule (ids only; the sensor
builds payloads from the sample library) and a common start time t0 on the
shared monotonic clock; fault times and scheduled times count from the same t0.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from harness.core.files import write_json
from harness.pipeline.plan import PipelinePlan
from harness.workload.schedule import Scheduled, WorkloadConfig

CANARY = "canary"  # the canary stream's sensor process and files (harness.measure.metrics.canary)


class Replay:
    def __init__(self, emu, workload: WorkloadConfig, plan: PipelinePlan, sensors: list[str],
                 schedule: list[Scheduled], duration_s: float, run_dir: Path,
                 redundant: bool = False, canary: list[Scheduled] | None = None) -> None:
        self.redundant = redundant  # every sensor sends every request
        # a light stream beside the workload, sent from the first sensor's node to its
        # entry stage by a sensor process of its own (`canary`): MTTR to a few ms
        self.canary = canary or []
        self.emu, self.wl, self.plan = emu, workload, plan
        self.sensors, self.schedule, self.duration_s = sensors, schedule, duration_s
        self.dir = run_dir / "sensors"
        self.procs: dict[str, object] = {}
        self.t0 = 0.0

    @property
    def deadline_s(self) -> float:
        """Seconds after t0 at which an unanswered request counts as lost."""
        return self.duration_s + self.wl.grace_s

    def start(self) -> float:
        """Start every sensor, wait until all are ready, give them t0; returns t0."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.check_inputs()
        streams = [(sensor, i, [s for s in self.schedule
                                if self.redundant or s.sensor == sensor])
                   for i, sensor in enumerate(self.sensors)]
        if self.canary:
            streams.append((CANARY, 0, self.canary))
        for name, i, requests in streams:
            sensor = self.sensors[i]
            first = self.entry_stage(i)
            plan = {
                "sensor": sensor, "deadline_s": self.deadline_s, "end_s": self.duration_s,
                "target": f"{self.emu.ips[self.entry(sensor, first)]}:"
                          f"{self.plan.port_of(first.name)}",
                "model": first.name, "output": self.plan.config.output,
                "samples": self.wl.samples, "sensor_index": i,
                "noise_seed": self.wl.noise_seed, "slo_ms": self.wl.slo_ms,
                "requests": [[s.request_id, s.sample_id, s.scheduled_s] for s in requests],
            }
            plan_file = self.dir / f"{name}.plan.json"
            write_json(plan_file, plan)
            log = open(self.dir / f"{name}.log", "w")
            node = self.emu.nodes[sensor]
            self.procs[name] = node.popen(
                [node.python, "-m", "harness.workload.node.sensor", str(plan_file),
                 str(self.dir / f"{name}.jsonl")],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
        for sensor, p in self.procs.items():
            line = p.stdout.readline()  # blocks until ready (or the sensor died)
            if "ready" not in line:
                p.wait()
                raise RuntimeError(f"sensor {sensor} did not start: "
                                   f"{self._last_log_line(sensor)}")
        self.t0 = time.monotonic() + self.wl.start_delay_s
        for p in self.procs.values():
            p.stdin.write(json.dumps({"t0": self.t0}) + "\n")
            p.stdin.close()
        return self.t0

    def entry_stage(self, sensor_index: int):
        """The stage sensor `i` feeds: the one taking what it sends (the first stage of a
        chain; in a pipeline with branches, its modality's)."""
        i = self.plan.entry_for(self.wl.library().input_names(sensor_index))
        return self.plan.stages[0 if i is None else i]

    def entry(self, sensor: str, first) -> str:
        """The node of the entry stage this sensor feeds: the stage's node, or in a fleet
        (first stage on every device) the nearest instance, its own device's."""
        if self.plan.fleet:
            return self.plan.placement.next_node(first.name, sensor)
        return first.node

    def check_inputs(self) -> None:
        """Every sensor feeds inputs an entry stage takes (before any process starts)."""
        error = entry_error(self.wl.library(), self.plan, self.sensors)
        if error:
            raise RuntimeError(error)

    def _last_log_line(self, sensor: str) -> str:
        lines = (self.dir / f"{sensor}.log").read_text().strip().splitlines()
        return lines[-1] if lines else ""

    def sensor_fault(self, sensor: str, mode: dict | None) -> None:
        """Make a sensor's output noisy or stuck (mode) or clean again (None)."""
        import signal

        proc = self.procs.get(sensor)
        if proc is None or proc.poll() is not None:
            raise RuntimeError(f"sensor {sensor} is not running")
        write_json(self.dir / f"{sensor}.fault.json", mode or {})
        proc.send_signal(signal.SIGUSR1)

    def wait(self) -> None:
        """Until every sensor is done, or the deadline (plus a margin) has passed."""
        end = self.t0 + self.deadline_s + 5
        while time.monotonic() < end:
            if all(p.poll() is not None for p in self.procs.values()):
                return
            time.sleep(0.1)

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
            p.wait()

    def record_files(self) -> list[Path]:
        """Each sensor's JSONL record of answers and errors (appended as they arrive)."""
        return [self.dir / f"{s}.jsonl" for s in self.sensors]

    def canary_file(self) -> Path | None:
        """The canary stream's record, if the run has one."""
        return self.dir / f"{CANARY}.jsonl" if self.canary else None

    def sensor_errors(self) -> list[str]:
        """Sensors that exited with an error (their log's last line)."""
        out = []
        for s, p in self.procs.items():
            if p.returncode not in (0, None, -9):
                out.append(f"sensor {s} exited {p.returncode}: {self._last_log_line(s)}")
        return out


def entry_error(lib, plan: PipelinePlan, sensors: list[str]) -> str | None:
    """Why some sensor's data has no entry stage to go to (None: every sensor has one)."""
    carries = plan.carries()
    takes = sorted({t for i in plan.entries() for t in carries[i]})
    for i, sensor in enumerate(sensors):
        try:
            names = lib.input_names(i)
        except ValueError as e:
            return f"sensor {sensor}: {e}"
        if plan.entry_for(names) is None:
            return (f"sensor {sensor} ({lib.name}) sends {', '.join(names)} but the "
                    f"pipeline's entry stages take {', '.join(takes)}")
    return None
