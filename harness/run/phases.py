"""One run, as phases: prepare, bring up, deploy, replay with faults, tear down, account.

Each phase is a method with one job; they share the run's state on `Run`.
What runs on the network (nothing, or an inference pipeline) is one object with
the same interface either way (`harness.run.inference`). The network is torn
down on every exit path (`harness.run.lifecycle.emulated`), and `account`
writes the outputs whatever happened before it: summary.json says VALID only
when nothing went wrong. Each phase keeps its part of the summary; `write_summary`
assembles the parts and checks them against the schema (`harness.run.summary`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from harness.core.files import SCHEMA_VERSION, write_json, write_parquet
from harness.core.provenance import provenance
from harness.emulation.network import Emulation
from harness.faults.injector import FaultInjector
from harness.measure.live.fidelity import check_links
from harness.measure.live.footprint import footprint, own_cpu_s
from harness.measure.live.link_samples import COLUMNS as LINK_COLUMNS
from harness.measure.live.link_samples import LinkSampler
from harness.run.events import EVENT_COLUMNS, EventLog
from harness.run.experiment import Experiment
from harness.run.inference import Inference, NoLoad
from harness.run.lifecycle import emulated, exit_on_signals, make_backend, make_shaper
from harness.run.oom import OomWatch
from harness.run.summary import SCHEMA_WARNING, assemble, checked

log = logging.getLogger("harness")
VALID, INVALID = "VALID", "INVALID"


class Run:
    def __init__(self, exp: Experiment, out_dir: Path, interactive: bool = False) -> None:
        self.exp, self.out_dir, self.interactive = exp, out_dir, interactive
        self.events = EventLog()
        self.reasons: list[str] = []  # why the run is INVALID; empty = VALID
        self.emu: Emulation | None = None
        self.load: NoLoad = (Inference(exp, out_dir, self.events) if exp.workload
                             else NoLoad())
        # the summary's parts, by the phase that knows them; `summary`: as written
        self.header: dict = {}
        self.provenance: dict = {}
        self.warnings: list[str] = []
        self.net: dict = {}  # prefix, network, link_stats, footprint
        self.cpu_up = 0.0
        self.started = time.time()
        self.summary: dict = {}

    def execute(self) -> str:
        """All phases; returns the verdict. Exceptions propagate after `account`."""
        self.prepare()
        try:
            with exit_on_signals(), emulated(self.exp, self.shaper, self.backend) as emu:
                self.emu = emu
                self.bring_up()
                oom = OomWatch(emu, self.events.record).start()
                try:
                    t0 = self.deploy()
                    self.replay_with_faults(t0)
                finally:
                    oom.stop()
            # leaving `emulated` tore the network down
        except KeyboardInterrupt:
            self.reasons.append("interrupted")
            raise
        except SystemExit as e:
            self.reasons.append(f"terminated by signal ({e.code})")
            raise
        except Exception as e:
            self.reasons.append(f"{type(e).__name__}: {e}")
            raise
        finally:
            self.account()
        return self.summary["verdict"]

    def prepare(self) -> None:
        """Everything that needs no network: the shaper (a ConfigError stops the run before
        anything changes), the summary's header, partitions and the request schedule."""
        exp = self.exp
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.shaper = make_shaper(exp)
        warnings: list[str] = []
        # the experiment as the backend runs it (e.g. GPU nodes on CPU with gpu=prefer)
        self.backend, self.exp = make_backend(exp, warnings)
        exp = self.exp
        if exp.workload:
            self.backend.check_stage_images(exp.pipeline.stages, exp.topology)
        self.backend.share(str(self.out_dir.resolve()))
        self.warnings = warnings
        self.header = {
            "schema_version": SCHEMA_VERSION, "mode": exp.mode,
            "topology": exp.topology_name, "faults": exp.faults_name,
            "backend": exp.backend.get("_target_"), "seed": exp.seed,
            "duration_s": exp.run.duration_s, "shaper": self.shaper.name,
            "config_hash": exp.config_hash, "config": exp.config,
            "technique": exp.technique_name if exp.workload else None,
            "workload": exp.config.get("workload", {}).get("model") if exp.workload else None,
            "slo_ms": exp.workload.slo_ms if exp.workload else None,
            "faults_schedule": [a.to_dict() for a in exp.faults.schedule()],
        }
        self.provenance = {**provenance(), "backend": exp.backend.get("_target_"),
                           "shaper": self.shaper.name,
                           "fidelity": "not measured (fidelity.enabled=false)"}
        # wall-clock span of the run: a sweep tells from it which jobs ran at once
        self.started = time.time()
        self.load.prepare()

    def bring_up(self) -> None:
        """Record the network that came up; measure its links if asked to."""
        emu = self.emu
        assert emu is not None
        self.net = {"prefix": emu.ledger.prefix, "network": emu.describe(),
                    **getattr(emu, "hosts_part", {})}  # across hosts: hosts, clock
        self.cpu_up = own_cpu_s()  # the harness's own CPU from here: the footprint
        log.info("network up in %.2fs (shaper=%s, prefix=%s)", emu.timings["up_s"],
                 emu.shaper.name, emu.ledger.prefix)
        if self.exp.fidelity.enabled:
            fid = check_links(emu, self.exp.fidelity)
            write_json(self.out_dir / "fidelity.json", fid)
            self.provenance["fidelity"] = {
                "links": len(fid["links"]), "out_of_tolerance": fid["out_of_tolerance"]}
            for n in fid["out_of_tolerance"]:
                self.warnings.append(f"link {n} outside fidelity tolerance")
                log.warning("link %s outside fidelity tolerance: %s", n, fid["links"][n])

    def deploy(self) -> float:
        """Start stages and sensors until all are ready; returns t0, the schedule's start."""
        assert self.emu is not None
        t0 = self.load.deploy(self.emu)
        self.emu.run_started()  # what starts from here on starts as on a device: afresh
        self.events.t0 = t0
        self.events.record("run.start", "", {"up_s": self.emu.timings["up_s"]}, at=t0)
        return t0

    def replay_with_faults(self, t0: float) -> None:
        """The schedule runs: requests, faults and the technique, until the run's end."""
        emu = self.emu
        assert emu is not None
        injector = FaultInjector(emu, self.exp.faults, self.events.record)
        self.load.attach(injector)
        sampler = LinkSampler(emu.shaper, t0).start()
        injector.start(t0)
        try:
            self.load.run(self.exp.run.duration_s, self.interactive, emu)
        finally:
            injector.stop()
            sampler.stop()
            write_parquet(self.out_dir / "links.parquet", sampler.rows, LINK_COLUMNS)
            self.reasons += self.load.stop()
        self.reasons += injector.errors + emu.trace_errors()
        self.reasons += getattr(emu, "host_errors", list)()  # across hosts: a dead agent
        self.net["link_stats"] = emu.shaper.stats()
        if getattr(emu, "hosts_part", None) is None:  # this machine's helpers only
            self.net["footprint"] = footprint(self.cpu_up, {
                "delay_line": emu.shaper.processes(), **emu.backend.helpers()})
        self.events.record("run.end", "", {})

    def account(self) -> None:
        """Outputs, whatever happened: requests, metrics, events, the verdict."""
        self.reasons += self.load.account(self.events, self.emu)
        if getattr(self.emu, "hosts_part", None) is not None:  # across hosts: the clocks
            from harness.hosts.split import clock_report

            self.net["clock"], why = clock_report(
                self.emu.clock_before, self.emu.clock_after, self.exp.hosts.clock_bound_ms,
                self.load.fields.get("mttd_ms"))
            self.reasons += why
        write_parquet(self.out_dir / "events.parquet", self.events.rows, EVENT_COLUMNS)
        self.write_summary()
        log.info("verdict %s %s -> %s", self.summary["verdict"], self.reasons, self.out_dir)

    def write_summary(self) -> None:
        """summary.json, the one place its parts meet: checked against its schema, and
        written either way (a summary that does not validate keeps its raw fields and
        says so in its warnings and the log: a run's results are never lost to it)."""
        fields, issues = assemble(
            self.header,
            {"verdict": INVALID if self.reasons else VALID, "verdict_reasons": self.reasons,
             "warnings": self.warnings + self.load.warnings, "provenance": self.provenance,
             "wall_clock": {"start": self.started, "end": time.time()}},
            self.net, {"timings": self.emu.timings} if self.emu is not None else {},
            self.load.fields)
        self.summary, problems = checked(fields, issues)
        if problems:
            log.error("%s (written with its raw fields): %s", SCHEMA_WARNING,
                      "; ".join(problems))
        write_json(self.out_dir / "summary.json", self.summary)


def execute(exp: Experiment, out_dir: Path, interactive: bool = False) -> int:
    """Run `exp` writing into `out_dir`; the exit code: 0 VALID, 1 INVALID."""
    return 0 if Run(exp, out_dir, interactive).execute() == VALID else 1
