"""Running a fault schedule: a thread that applies each action on time and records it.

Each action becomes an event (`fault.<action>`, stamped with when it began);
an action that fails becomes `fault.error` and a reason the run is INVALID.
Kinds reach what they act on through this object: the emulated network, the
workload's hooks, and the busy loops of `contention`.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable

from harness.faults.schedule import FaultAction, FaultsConfig

Record = Callable[..., None]  # (kind, target, detail, at=monotonic start)


class FaultInjector:
    def __init__(self, emu, faults: FaultsConfig, record: Record) -> None:
        self.emu, self.faults, self.record = emu, faults, record
        self.thread: threading.Thread | None = None
        self.stopped = threading.Event()
        self.stress: dict[str, list[subprocess.Popen]] = {}  # node -> busy loops
        self.errors: list[str] = []
        self.t0 = 0.0
        # called with the node name when a crashed node powers up again (it boots its
        # services: the pipeline restarts the stages that lived there)
        self.on_restore: list[Callable[[str], None]] = []
        # (node, {"noise_sigma", "stuck"} or None) -> None: the sensors of the workload
        self.on_sensor: list[Callable[[str, dict | None], None]] = []

    def start(self, t0: float) -> None:
        self.t0 = t0
        self.thread = threading.Thread(target=self._loop, name="faults", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        for a in self.faults.schedule():
            if self.stopped.wait(max(0.0, self.t0 + a.at_s - time.monotonic())):
                return
            started = time.monotonic()  # events carry when the action began
            try:
                detail = self.apply(a)
                detail["apply_ms"] = round((time.monotonic() - started) * 1000, 3)
                self.record(f"fault.{a.action}", a.label(),
                            {"scheduled_s": a.at_s, **detail}, at=started)
            except Exception as e:  # a fault that did not happen makes the run INVALID
                self.errors.append(f"{a.action} {a.target or ''} at {a.at_s}s: {e}")
                self.record("fault.error", a.label(),
                            {"scheduled_s": a.at_s, "action": a.action, "error": str(e)},
                            at=started)

    def apply(self, a: FaultAction) -> dict:
        return a.kind.apply(self, a)

    def stop(self) -> None:
        self.stopped.set()
        if self.thread:
            self.thread.join(timeout=10)
        for procs in self.stress.values():
            for p in procs:
                p.kill()
                p.wait()
        self.stress.clear()
