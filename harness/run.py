"""One run: bring the network up, (measure it,) replay the fault schedule, tear down, record.

Teardown runs on every exit path: normal end, exception, Ctrl-C, SIGTERM and
SIGHUP (turned into SystemExit so `finally` runs). A run killed with -9 is
cleaned up afterwards by `python -m harness.clean`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from hydra.utils import get_class

from harness.emulation import Emulation
from harness.experiment import Experiment, sensors_of
from harness.faults import FaultInjector
from harness.fidelity import check_links
from harness.ledger import Ledger, remove_run
from harness.links import Shaper, make_shaper
from harness.metrics import clean_json, resilience, summarize
from harness.pipeline import Deployment
from harness.replay import Replay, reference_accuracy
from harness.results import SCHEMA_VERSION, write_json, write_parquet, write_parquet_df
from harness.workload import make_schedule

log = logging.getLogger("harness")
EVENT_COLUMNS = ["t_s", "kind", "target", "detail"]


class EventLog:
    """Timestamped events; `t_s` counts from run start (`t0`, set once it is known)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.events: list[tuple[float, str, str, str]] = []
        self.lock = threading.Lock()

    def record(self, kind: str, target: str, detail: dict | None = None,
               at: float | None = None) -> None:
        """`at` (time.monotonic) is when the event began; default now."""
        t = time.monotonic() if at is None else at
        text = json.dumps(detail or {}, sort_keys=True, default=str)
        with self.lock:
            self.events.append((t, kind, target, text))
        log.info("%-20s %s %s", kind, target, text)

    @property
    def rows(self) -> list[dict]:
        with self.lock:
            return [{"t_s": round(t - self.t0, 6), "kind": k, "target": tg, "detail": d}
                    for t, k, tg, d in sorted(self.events, key=lambda e: e[0])]


@contextlib.contextmanager
def exit_on_signals() -> Iterator[None]:
    """SIGTERM/SIGHUP raise SystemExit in the main thread so teardown runs."""
    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _ignore_signals() -> dict:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.signal(s, signal.SIG_IGN)
            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}


@contextlib.contextmanager
def emulated(exp: Experiment, shaper: Shaper | None = None) -> Iterator[Emulation]:
    """The experiment's network, up; torn down (signals held off) however the block exits."""
    shaper = shaper or make_shaper(exp.network.shaper)
    ledger = Ledger.new()
    emu: Emulation | None = None
    try:
        backend_cfg = dict(exp.backend)
        backend = get_class(backend_cfg.pop("_target_"))(**backend_cfg)
        emu = Emulation(exp.topology, exp.network, backend, shaper, ledger, exp.seed)
        emu.start()
        yield emu
    finally:
        old = _ignore_signals()
        try:
            t = time.monotonic()
            if emu is not None:
                emu.stop()
            else:
                remove_run(ledger.prefix)
            if emu is not None:
                emu.timings["teardown_s"] = time.monotonic() - t
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def first_fault_s(exp: Experiment) -> float | None:
    """When the first fault strikes (restorative actions are not faults)."""
    starts = [a.at_s for a in exp.faults.schedule()
              if a.action not in ("restore", "resume", "link_up", "link_restore", "heal",
                                  "unthrottle", "contention_end")]
    return min(starts) if starts else None


def breakdown_ms(b: dict | None, t0: float, fault_at: float | None,
                 mttr_ms: float | None) -> dict | None:
    """A technique's recovery phases from the fault on; `reroute_ms` (replica ready to the
    first ok answer: reconnect and the request itself) closes the sum to MTTR."""
    if not b or fault_at is None:
        return None
    out = {"detection_ms": (b["t_detect"] - (t0 + fault_at)) * 1000,
           **{k: v for k, v in b.items() if k.endswith("_ms")}}
    if mttr_ms is not None:
        out["reroute_ms"] = mttr_ms - sum(out.values())
    return out


def overheads(before: tuple, after: tuple, deployment: Deployment, exp: Experiment) -> dict:
    """Costs to set against the baseline of the same seed: CPU, bytes, replicas."""
    cpu0, links0 = before
    cpu1, links1 = after
    sent = None
    if links1:
        sent = 0
        for name, dirs in links1.items():
            for d, c in dirs.items():
                sent += c.get("fwd_bytes", 0) - links0.get(name, {}).get(d, {}).get("fwd_bytes", 0)
    return {
        "cpu_s": sum(cpu1[n] - cpu0.get(n, 0.0) for n in cpu1),
        "cpu_s_by_node": {n: cpu1[n] - cpu0.get(n, 0.0) for n in cpu1},
        "bytes_sent": sent,
        "replicas": len(deployment.instances) - len(exp.pipeline.stages),
    }


def execute(exp: Experiment, out_dir: Path, interactive: bool = False) -> int:
    """Run `exp` writing into `out_dir`; returns the process exit code."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shaper = make_shaper(exp.network.shaper)  # ConfigError before anything changes
    events = EventLog()
    summary: dict = {
        "schema_version": SCHEMA_VERSION, "verdict": "INVALID", "verdict_reasons": [],
        "warnings": [], "mode": exp.mode, "topology": exp.topology_name,
        "faults": exp.faults_name, "backend": exp.backend.get("_target_"), "seed": exp.seed,
        "duration_s": exp.run.duration_s, "shaper": shaper.name,
        "config_hash": exp.config_hash, "config": exp.config,
        "technique": exp.technique_name if exp.workload else None,
        "workload": exp.config.get("workload", {}).get("model") if exp.workload else None,
        "slo_ms": exp.workload.slo_ms if exp.workload else None,
        "faults_schedule": [dataclasses.asdict(a) for a in exp.faults.schedule()],
    }
    reasons: list[str] = []
    emu: Emulation | None = None
    injector: FaultInjector | None = None
    deployment: Deployment | None = None
    replay: Replay | None = None
    if exp.workload:  # cut partitions and fix the schedule before the network exists
        sensors = sensors_of(exp.workload, exp.topology)
        redundant = exp.technique.observations
        # redundant sensing: one request per observation, sent by every sensor
        schedule = make_schedule(exp.workload, ["+".join(sensors)] if redundant else sensors,
                                 exp.run.duration_s, exp.seed)
        deployment = Deployment(None, exp.pipeline, out_dir, events.record)
        deployment.prepare()
    try:
        with exit_on_signals(), emulated(exp, shaper) as emu:
            summary["prefix"] = emu.ledger.prefix
            summary["network"] = emu.describe()
            log.info("network up in %.2fs (shaper=%s, prefix=%s)", emu.timings["up_s"],
                     emu.shaper.name, emu.ledger.prefix)
            if exp.fidelity.enabled:
                fid = check_links(emu, exp.fidelity)
                write_json(out_dir / "fidelity.json", fid)
                for n in fid["out_of_tolerance"]:
                    summary["warnings"].append(f"link {n} outside fidelity tolerance")
                    log.warning("link %s outside fidelity tolerance: %s", n, fid["links"][n])
            if deployment is not None:
                deployment.emu = emu
                deployment.start(exp.technique.instances(exp.pipeline, deployment.files,
                                                         emu.ips))
                summary["providers"] = deployment.providers()
                replay = Replay(emu, exp.workload, exp.pipeline, sensors, schedule,
                                exp.run.duration_s, out_dir, redundant)
                t0 = replay.start()
                usage0 = (deployment.cpu_s(), emu.shaper.stats())
            else:
                t0 = time.monotonic()
            events.t0 = t0
            events.record("run.start", "", {"up_s": emu.timings["up_s"]}, at=t0)
            injector = FaultInjector(emu, exp.faults, events.record)
            if deployment is not None:
                injector.on_restore.append(deployment.reboot)
            if replay is not None:
                injector.on_sensor.append(replay.sensor_fault)
            injector.start(t0)
            try:
                if deployment is not None:
                    exp.technique.start(emu, deployment, events.record)
                if interactive:
                    emu.backend.cli()
                elif replay is not None:
                    replay.wait()
                else:
                    time.sleep(max(0.0, t0 + exp.run.duration_s - time.monotonic()))
            finally:
                if deployment is not None:
                    exp.technique.stop()
                    usage1 = (deployment.cpu_s(), emu.shaper.stats())
                    summary.update(overheads(usage0, usage1, deployment, exp))
                injector.stop()
                if replay is not None:
                    replay.stop()
                    reasons += replay.sensor_errors()
                if deployment is not None:
                    deployment.stop()
            reasons += injector.errors + emu.trace_errors()
            summary["link_stats"] = emu.shaper.stats()
            events.record("run.end", "", {})
    except KeyboardInterrupt:
        reasons.append("interrupted")
        raise
    except SystemExit as e:
        reasons.append(f"terminated by signal ({e.code})")
        raise
    except Exception as e:
        reasons.append(f"{type(e).__name__}: {e}")
        raise
    finally:
        if emu is not None:
            summary["timings"] = emu.timings
        technique_events: list[dict] = []
        if deployment is not None and emu is not None:
            by_ip = {ip: n for n, ip in emu.ips.items()}
            technique_events = deployment.technique_events()
            reasons += [f"{e['kind']} on {e['target']}: {json.loads(e['detail']).get('error')}"
                        for e in events.rows if e["kind"] in ("technique.error", "stage.error")]
            for ev in technique_events:
                detail = {k: v for k, v in ev.items() if k not in ("t", "kind", "target")}
                host = ev["target"].rsplit(":", 1)[0]
                events.record(ev["kind"], by_ip.get(host, ev["target"]), detail, at=ev["t"])
        if replay is not None:  # whatever happened, account for every scheduled request
            df = replay.outcomes()
            write_parquet_df(out_dir / "requests.parquet", df)
            summary.update(summarize(df))
            fault_at = first_fault_s(exp)
            summary.update(resilience(df, events.rows, fault_at, exp.run.duration_s))
            summary["recovery_breakdown_ms"] = breakdown_ms(
                exp.technique.recovery_breakdown_from(technique_events), events.t0, fault_at,
                summary.get("mttr_ms"))
            summary["reference_accuracy"] = None if redundant else reference_accuracy(
                exp.workload.model, exp.pipeline, df, sensors, exp.workload.noise_seed)
            if (summary["lateness_ms"]["p99"] or 0) > 1.0:
                summary["warnings"].append(
                    f"load generator lateness p99 {summary['lateness_ms']['p99']:.2f} ms > 1 ms")
        summary["verdict_reasons"] = reasons
        summary["verdict"] = "INVALID" if reasons else "VALID"
        write_parquet(out_dir / "events.parquet", events.rows, EVENT_COLUMNS)
        write_json(out_dir / "summary.json", clean_json(summary))
        log.info("verdict %s %s -> %s", summary["verdict"], reasons, out_dir)
    return 0
