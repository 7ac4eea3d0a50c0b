"""`make chaos`: kill -9 the harness at random moments, clean up, look for leftovers.

A trial starts a real run (failover under edge_crash on device_edge_cloud, so set-up,
stage loading, a fault and a technique's reaction all happen), waits for the phase
it targets to begin (set-up: the run's state file appears; stages: "network up";
faults: the first fault event; teardown: "teardown of"), waits a random part of
that phase's typical length, and sends SIGKILL to the harness process only: its
children (stages, sensors, the delay line, containers) are orphaned as they would
be by a real crash. Then `python -m harness.clean` runs, as a user would, and a
machine inventory (`harness.selftest.inventory`, every instance of every kind, not
only what carries the run's prefix) is compared with the one taken before the
trial. The phase the kill really landed in is the last marker seen before it.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.core.files import write_json
from harness.core.paths import REPO
from harness.emulation.ledger import load_ledgers
from harness.selftest import inventory

RUN = ["technique=failover", "faults=edge_crash", "workload=digits",
       "topology=device_edge_cloud", "run.duration_s=3"]
# phase -> (log marker that starts it, seconds of its typical length to kill within)
PHASES = {"setup": ("", 0.4), "stages": ("network up in", 0.6),
          "faults": ("fault.", 1.0), "teardown": ("teardown of", 0.4)}
MARKERS = [("network up in", "stages"), ("run.start", "run"), ("fault.", "faults"),
           ("run.end", "after run"), ("teardown of", "teardown"), ("verdict", "finished")]


class TrialError(Exception):
    """A trial that could not be one: the harness exited before setting anything up."""


@dataclass
class Trial:
    n: int
    backend: str
    target: str  # the phase aimed at
    delay_s: float  # after the phase's marker
    landed: str = ""  # the phase the kill landed in (last marker seen)
    prefix: str = ""
    killed: bool = False  # False: the run ended before the kill (counts, but say so)
    clean_output: str = ""
    leftovers: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0


def _new_state_file(before: set[str], proc: subprocess.Popen, timeout: float) -> str:
    """The prefix of the state file the harness `proc` writes when its set-up begins ("" if
    it exits first); `before`: the state files there were already."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for led in load_ledgers():  # complete state files only, temporary ones skipped
            if led.owner_pid == proc.pid and f"{led.prefix}.json" not in before:
                return led.prefix
        time.sleep(0.005)
    return ""


class Output:
    """The harness's log lines as they come, and the phase markers seen so far."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.lines.append("")  # end of output
            self.cond.notify_all()

    def wait_for(self, marker: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                if any(marker in line for line in self.lines if line):
                    return True
                if "" in self.lines or time.monotonic() >= deadline:
                    return False
                self.cond.wait(deadline - time.monotonic())

    def phase(self) -> str:
        with self.cond:
            seen = "setup"
            for line in self.lines:
                for marker, phase in MARKERS:
                    if line and marker in line:
                        seen = phase
            return seen


CLEAN = [sys.executable, "-m", "harness.clean"]


def run_trial(t: Trial, out_dir: Path, clean: list[str] = CLEAN) -> Trial:
    """One trial; `clean` is the clean-up command (a test swaps it for a no-op to show
    that the inventory sees what a killed run leaves)."""
    before = inventory.snapshot()
    states = inventory.state_files()
    t0 = time.monotonic()
    argv = [sys.executable, "-m", "harness", *RUN, f"backend={t.backend}", f"seed={t.n}",
            f"hydra.run.dir={out_dir / f'trial_{t.n:02d}'}"]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    out = Output(proc)
    t.prefix = _new_state_file(states, proc, timeout=60)
    marker, _ = PHASES[t.target]
    if not marker or out.wait_for(marker, timeout=120):
        time.sleep(t.delay_s)
    t.landed = out.phase()
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)  # the harness only: its children are orphaned
        t.killed = True
    proc.wait()
    out.thread.join(timeout=10)
    if not t.prefix:  # it never set anything up: not a kill trial (bad input, stale image)
        said = [line.strip() for line in out.lines if line.strip()]
        errors = [line for line in said if "error" in line.lower()]
        raise TrialError(f"trial {t.n} ({t.backend}) did not start a run: "
                         f"{(errors or said or ['no output'])[-1]}")
    c = subprocess.run(clean, cwd=REPO, capture_output=True, text=True, timeout=300)
    t.clean_output = (c.stdout + c.stderr).strip()
    t.leftovers = inventory.new_items(before, inventory.snapshot(),
                                      inventory.live_prefixes())
    t.seconds = time.monotonic() - t0
    return t


def docker_present() -> str | None:
    """Why the docker backend cannot be tried here, or None if it can."""
    try:
        import docker

        docker.from_env().ping()
    except Exception as e:  # noqa: BLE001 - any failure means: not present
        return f"{type(e).__name__}: {str(e)[:120]}"
    return None


def plan(n: int, backends: list[str], seed: int, phases: list[str] | None = None) -> list[Trial]:
    """Every (backend, phase) pair in turn, so each gets its share; random delays."""
    rng = random.Random(seed)
    pairs = [(b, p) for b in backends for p in phases or PHASES]
    trials = []
    for i in range(n):
        backend, phase = pairs[i % len(pairs)]
        trials.append(Trial(i + 1, backend, phase, round(rng.uniform(0, PHASES[phase][1]), 3)))
    return trials


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.chaos", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--backend", choices=["mininet", "docker"], action="append",
                    help="backends to try (default: every one present)")
    ap.add_argument("--phase", choices=list(PHASES), action="append",
                    help="phases to aim at (default: all)")
    ap.add_argument("--out", default="results/chaos", help="where chaos.json goes")
    args = ap.parse_args(argv)
    if args.trials < 1:
        print(f"harness.chaos: --trials={args.trials}: must be >= 1", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("harness.chaos: must run as root (the harness it kills does)", file=sys.stderr)
        return 2
    backends, absent = args.backend or ["mininet", "docker"], {}
    if "docker" in backends and (why := docker_present()):
        if args.backend:
            print(f"harness.chaos: --backend=docker: {why}", file=sys.stderr)
            return 2
        absent["docker"] = why
        backends = [b for b in backends if b != "docker"]
    out_dir = REPO / args.out / time.strftime("%Y-%m-%d_%H-%M-%S")
    out_dir.mkdir(parents=True, exist_ok=True)
    trials = plan(args.trials, backends, args.seed, args.phase)
    for t in trials:
        try:
            run_trial(t, out_dir)
        except TrialError as e:
            print(f"harness.chaos: {e}", file=sys.stderr)
            return 2
        status = "LEFTOVERS " + inventory.dumps(t.leftovers) if t.leftovers else "clean"
        print(f"trial {t.n:2d}/{len(trials)} {t.backend:7s} aimed {t.target:8s} "
              f"+{t.delay_s:.3f}s landed {t.landed:9s} {'' if t.killed else '(ended) '}"
              f"{t.prefix}: {status}", flush=True)
    dirty = [t for t in trials if t.leftovers]
    landed: dict[str, int] = {}
    for t in trials:
        landed[f"{t.backend}/{t.landed}"] = landed.get(f"{t.backend}/{t.landed}", 0) + 1
    write_json(out_dir / "chaos.json", {
        "trials": len(trials), "with_leftovers": len(dirty), "backends": backends,
        "absent_backends": absent, "landed": landed, "run": RUN,
        "results": [asdict(t) for t in trials]})
    print(f"{len(dirty)} of {len(trials)} trials left something behind; landed: "
          + ", ".join(f"{k} {v}" for k, v in sorted(landed.items()))
          + (f"; not tried: {absent}" if absent else ""))
    print(out_dir / "chaos.json")
    return 1 if dirty else 0
