"""What a run drives on its network: nothing (emulation and faults only) or an inference
pipeline (stages, sensors, a technique). One interface, so the run's phases need no
`if there is a pipeline` branches.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from harness.core.files import write_json, write_parquet_df
from harness.emulation.network import Emulation
from harness.faults.injector import FaultInjector
from harness.measure.live import memory
from harness.measure.metrics.canary import canary_schedule
from harness.measure.metrics.outcomes import outcomes, read_records, summarize
from harness.measure.metrics.reference import join_reference, reference_accuracy
from harness.measure.metrics.resilience import breakdown_ms, overheads, resilience
from harness.pipeline.deployment import Deployment
from harness.run.events import EventLog
from harness.run.experiment import Experiment, sensors_of
from harness.workload.replay import Replay
from harness.workload.schedule import make_schedule


def fault_in_effect(rows: list[dict], planned_s: float | None,
                    start: bool = False) -> float | None:
    """When the first fault had taken effect: its action's start plus how long applying
    it took (a crash: its processes dead). On a busy machine the action can start late
    and take a while; a request served meanwhile by the dying node is not a recovery.
    `start`: when its action began instead (a technique may notice a fault while it is
    being applied). The planned instant when no event says otherwise."""
    if planned_s is None:
        return None
    done = []
    for r in rows:
        if not r["kind"].startswith("fault.") or r["kind"] == "fault.error":
            continue
        d = json.loads(r["detail"] or "{}")
        if d.get("scheduled_s") == planned_s:
            done.append(r["t_s"] + (0.0 if start else d.get("apply_ms", 0.0) / 1000))
    return round(min(done), 6) if done else planned_s


class NoLoad:
    """Emulation and faults only: the run lasts `run.duration_s` from when the network is up.

    `fields` and `warnings`: its part of summary.json, filled as its phases learn them
    (the run assembles the summary: `harness.run.phases.Run.write_summary`)."""

    def __init__(self) -> None:
        self.fields: dict = {}
        self.warnings: list[str] = []

    def prepare(self) -> None:
        """Files only, before the network exists."""

    def deploy(self, emu: Emulation) -> float:
        """Start what runs on the network; returns t0, when the schedule starts."""
        self.t0 = time.monotonic()
        return self.t0

    def attach(self, injector: FaultInjector) -> None:
        """Give fault actions what they act on beyond the network."""

    def run(self, duration_s: float, interactive: bool, emu: Emulation) -> None:
        if interactive:
            emu.backend.cli()
            return
        # In slices: the kernel hands a signal to any thread of the process, and if it is
        # not the main thread, Python raises its KeyboardInterrupt/SystemExit only when
        # the main thread next runs, which one long sleep would put off to the run's end.
        end = self.t0 + duration_s
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(0.1, left))

    def stop(self) -> list[str]:
        """Stop what runs on the network; reasons the run is INVALID."""
        return []

    def account(self, events: EventLog, emu: Emulation | None) -> list[str]:
        """Write the request table and its summary fields, whatever happened; reasons the
        run is INVALID."""
        return []


class Inference(NoLoad):
    """A pipeline of stages placed by a technique, fed by sensors replaying a schedule."""

    def __init__(self, exp: Experiment, out_dir: Path, events: EventLog) -> None:
        assert exp.workload is not None and exp.pipeline is not None and exp.plan is not None
        super().__init__()
        self.exp, self.out_dir, self.events = exp, out_dir, events
        self.technique = exp.technique
        self.library = exp.workload.library()
        self.sensors = sensors_of(exp.workload, exp.topology)
        # one request per observation, sent by every sensor: redundant sensing, or sensors
        # of different modalities whose branches meet at a join stage
        self.redundant = exp.technique.observations or bool(exp.plan.joins())
        self.schedule = make_schedule(exp.workload,
                                      ["+".join(self.sensors)] if self.redundant
                                      else self.sensors, exp.run.duration_s, exp.seed)
        self.canary = canary_schedule(exp.measure.canary_hz, exp.run.duration_s,
                                      self.library.sample_ids())
        self.deployment = Deployment(None, exp.pipeline, out_dir, events.record)
        self.replay: Replay | None = None
        self.usage0: tuple | None = None
        self.technique_events: list[dict] = []
        self.mem_ready: dict[str, dict] = {}

    def prepare(self) -> None:
        self.deployment.prepare()

    def deploy(self, emu: Emulation) -> float:
        exp = self.exp
        self.emu = emu
        self.deployment.emu = emu
        t = time.monotonic()
        self.technique.parts_dir = self.deployment.parts_dir
        self.deployment.start(self.technique.instances(exp.plan, self.deployment.files,
                                                       emu.ips))
        self.fields.update(stages_ready_s=round(time.monotonic() - t, 3),  # first launch to
                           stage_instances=len(self.deployment.instances),  # all ready
                           providers=self.deployment.providers())
        self.mem_ready = memory.snapshot(self.deployment.procs)
        self.replay = Replay(emu, exp.workload, exp.plan, self.sensors, self.schedule,
                             exp.run.duration_s, self.out_dir, self.redundant, self.canary)
        t = time.monotonic()
        t0 = self.replay.start()
        self.fields["sensors_ready_s"] = round(time.monotonic() - t, 3)  # started, warmed up
        self.usage0 = (self.deployment.cpu_s(), emu.shaper.stats())
        return t0

    def attach(self, injector: FaultInjector) -> None:
        injector.on_restore.append(self.deployment.reboot)
        assert self.replay is not None
        injector.on_sensor.append(self.replay.sensor_fault)

    def run(self, duration_s: float, interactive: bool, emu: Emulation) -> None:
        self.technique.start(emu, self.deployment, self.events.record)
        if interactive:
            emu.backend.cli()
        else:
            assert self.replay is not None
            self.replay.wait()

    def stop(self) -> list[str]:
        reasons: list[str] = []
        self.technique.stop()
        if self.usage0 is not None:
            usage1 = (self.deployment.cpu_s(), self.emu.shaper.stats())
            self.fields.update(overheads(self.usage0, usage1,
                                         len(self.deployment.instances),
                                         self.exp.plan.n_placed()))
        if self.replay is not None:
            self.replay.stop()
            reasons += self.replay.sensor_errors()
        reasons += self.deployment.provider_fallbacks()
        self._memory()
        self.deployment.stop()
        return reasons

    def _memory(self) -> None:
        """Each stage's memory when ready and now (stages/memory.json), summarised."""
        if not self.mem_ready:
            return
        end = memory.snapshot(self.deployment.procs)
        write_json(self.deployment.dir / "memory.json",
                   {k: {"ready": self.mem_ready.get(k), "end": end.get(k)}
                    for k in sorted(self.mem_ready.keys() | end.keys())})
        fields, warnings = memory.summarize(self.mem_ready, end)
        self.fields.update(fields)
        self.warnings += warnings

    def account(self, events: EventLog, emu: Emulation | None) -> list[str]:
        reasons = self._merge_technique_events(events, emu)
        exp = self.exp
        wl = exp.workload
        # whatever happened, every scheduled request gets one outcome (never sent: lost)
        records = read_records(self.replay.record_files()) if self.replay else {}
        labels = self.library.labels({s.sample_id for s in self.schedule})
        df = outcomes(self.schedule, records, labels, wl.slo_ms,
                      exp.run.duration_s + wl.grace_s)
        write_parquet_df(self.out_dir / "requests.parquet", df)
        canary = None
        if self.canary:  # its own table: never in availability, accuracy or latency
            canary_file = self.replay.canary_file() if self.replay else None
            canary = outcomes(self.canary, read_records([canary_file] if canary_file else []),
                              labels, wl.slo_ms, exp.run.duration_s + wl.grace_s)
            write_parquet_df(self.out_dir / "canary.parquet", canary)
        # the fault counts from its action's start: a kill takes 10-40 ms to apply, and a
        # refusal seen or a request lost meanwhile is the fault's doing
        fault_at = fault_in_effect(events.rows, exp.faults.first_fault_s(), start=True)
        outs = summarize(df)
        res = resilience(df, events.rows, fault_at, exp.run.duration_s, canary)
        self.fields.update({
            **outs,
            "fault_in_effect_s": fault_in_effect(events.rows, exp.faults.first_fault_s()),
            **res,
            "recovery_breakdown_ms": breakdown_ms(
                self.technique.recovery_breakdown_from(self.technique_events), events.t0,
                fault_at, res["mttr_ms"]),
            **self.technique.summary_from(self.technique_events),
            "reference_accuracy": None if self.redundant else reference_accuracy(
                self.library, exp.pipeline, df, self.sensors, wl.noise_seed),
        })
        if exp.plan.joins():
            self.fields["reference_join"] = join_reference(self.library, exp.plan, df,
                                                           self.sensors, wl.noise_seed)
        if (outs["lateness_ms"]["p99"] or 0) > 1.0:
            self.warnings.append(
                f"load generator lateness p99 {outs['lateness_ms']['p99']:.2f} ms > 1 ms")
        return reasons

    def _merge_technique_events(self, events: EventLog, emu: Emulation | None) -> list[str]:
        """Events the stages and the controller recorded join the run's event log."""
        if emu is None:
            return []
        by_ip = {ip: n for n, ip in emu.ips.items()}
        self.technique_events = self.deployment.technique_events()
        for ev in self.technique_events:
            detail = {k: v for k, v in ev.items() if k not in ("t", "kind", "target")}
            host = ev["target"].rsplit(":", 1)[0]
            events.record(ev["kind"], by_ip.get(host, ev["target"]), detail, at=ev["t"])
        return [f"{e['kind']} on {e['target']}: {json.loads(e['detail']).get('error')}"
                for e in events.rows
                if e["kind"] in ("technique.error", "stage.error", "reconfigure.error")]
