"""Faults on a schedule: timed actions on named nodes and links, each recorded as an event.

Actions (seconds from run start, `at_s`):
  crash / restore        node goes silent like a machine that lost power (its
                         processes die, its links carry nothing: peers time out)
  kill                   the node's processes die; its OS still answers (RST)
  hang / resume          SIGSTOP / SIGCONT of the node's processes
  link_down / link_up    the link carries nothing / carries again
  link_degrade           new bw_mbit / delay_ms / jitter_ms / loss_pct, or a
                         Mahimahi `trace` for its bandwidth; `link_restore` undoes
  partition / heal       node `groups` cannot reach each other / all can again
  throttle / unthrottle  cgroup CPU quota (`cpu_pct` of one core): thermal throttling
  contention / contention_end   `workers` busy loops on the node (CPU contention)
  sensor_noise / sensor_clean   a sensor's output gets `noise_sigma` extra noise, or
                         is `stuck` on its last frame / is clean again
`for_s` schedules the inverse action that much later.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.core.config import LinkProps, check_range, fail
from harness.emulation.topology import Topology

NODE_ACTIONS = {"crash", "restore", "kill", "hang", "resume", "throttle", "unthrottle",
                "contention", "contention_end", "sensor_noise", "sensor_clean"}
LINK_ACTIONS = {"link_down", "link_up", "link_degrade", "link_restore"}
GROUP_ACTIONS = {"partition", "heal"}
ACTIONS = NODE_ACTIONS | LINK_ACTIONS | GROUP_ACTIONS
INVERSE = {"crash": "restore", "hang": "resume", "link_down": "link_up",
           "link_degrade": "link_restore", "partition": "heal", "throttle": "unthrottle",
           "contention": "contention_end", "sensor_noise": "sensor_clean"}
RESTORES = set(INVERSE.values())  # actions that undo a fault


@dataclass
class FaultAction:
    at_s: float
    action: str
    target: str | None = None  # node or link name
    groups: list[list[str]] = field(default_factory=list)  # partition
    direction: str = "both"  # link_degrade: fwd (a->b) | rev | both
    bw_mbit: float | None = None
    delay_ms: float | None = None
    jitter_ms: float | None = None
    loss_pct: float | None = None
    trace: str | None = None  # link_degrade: Mahimahi trace for bandwidth
    cpu_pct: float | None = None  # throttle
    workers: int = 1  # contention
    noise_sigma: float = 0.5  # sensor_noise: extra Gaussian noise on the frames
    stuck: bool = False  # sensor_noise: repeat the last frame instead
    for_s: float | None = None  # then the inverse action

    def validate(self, key: str) -> None:
        check_range(f"{key}.at_s", self.at_s, 0)
        if self.action not in ACTIONS:
            fail(f"{key}.action", self.action,
                 f"unknown action (one of {', '.join(sorted(ACTIONS))})")
        if self.for_s is not None:
            check_range(f"{key}.for_s", self.for_s, 0)
            if self.action not in INVERSE:
                fail(f"{key}.for_s", self.for_s, f"action {self.action!r} has no inverse")
        if self.direction not in ("fwd", "rev", "both"):
            fail(f"{key}.direction", self.direction, "one of fwd, rev, both")
        LinkProps(self.bw_mbit, self.delay_ms, self.jitter_ms, self.loss_pct).validate(key)
        check_range(f"{key}.cpu_pct", self.cpu_pct, 1, 100_000)
        check_range(f"{key}.workers", self.workers, 1, 64)
        check_range(f"{key}.noise_sigma", self.noise_sigma, 0, 100)
        if self.action == "throttle" and self.cpu_pct is None:
            fail(f"{key}.cpu_pct", None, "throttle needs cpu_pct")
        if self.action == "partition" and len(self.groups) < 2:
            fail(f"{key}.groups", self.groups, "partition needs at least two groups")
        if self.action == "link_degrade" and not (
                LinkProps(self.bw_mbit, self.delay_ms, self.jitter_ms,
                          self.loss_pct).set_fields() or self.trace):
            fail(f"{key}", self.action, "link_degrade needs bw_mbit, delay_ms, jitter_ms, "
                                        "loss_pct or trace")

    def change(self) -> LinkProps:
        return LinkProps(self.bw_mbit, self.delay_ms, self.jitter_ms, self.loss_pct)


@dataclass
class FaultsConfig:
    actions: list[FaultAction] = field(default_factory=list)

    def check_against(self, topo: Topology, key: str = "faults") -> None:
        """References to unknown nodes or links are config errors."""
        nodes = {n.name for n in topo.nodes}
        links = {lk.name for lk in topo.links}
        for i, a in enumerate(self.actions):
            k = f"{key}.actions[{i}]"
            if a.action in NODE_ACTIONS and a.target not in nodes:
                fail(f"{k}.target", a.target, "unknown node")
            if a.action in LINK_ACTIONS and a.target not in links:
                fail(f"{k}.target", a.target, f"unknown link (links: {', '.join(sorted(links))})")
            for g, group in enumerate(a.groups):
                for n in group:
                    if n not in nodes:
                        fail(f"{k}.groups[{g}]", n, "unknown node")
            if a.trace:
                from harness.emulation.traces import load_mahimahi

                load_mahimahi(a.trace, f"{k}.trace")

    def schedule(self) -> list[FaultAction]:
        """All actions with `for_s` expanded into their inverse, in time order (stable)."""
        out = []
        for a in self.actions:
            out.append(a)
            if a.for_s is not None:
                out.append(FaultAction(at_s=a.at_s + a.for_s, action=INVERSE[a.action],
                                       target=a.target, groups=a.groups,
                                       direction=a.direction))
        return sorted(out, key=lambda a: a.at_s)

    def first_fault_s(self) -> float | None:
        """When the first fault strikes (restorations are not faults)."""
        starts = [a.at_s for a in self.schedule() if a.action not in RESTORES]
        return min(starts) if starts else None

    def check_sensors(self, sensors: list[str] | None, key: str = "faults") -> None:
        """sensor_noise targets a node that runs a sensor of the workload."""
        for i, a in enumerate(self.actions):
            if a.action in ("sensor_noise", "sensor_clean") and (
                    sensors is None or a.target not in sensors):
                fail(f"{key}.actions[{i}].target", a.target,
                     "not a sensor of the workload" if sensors else "needs a workload")


Record = Callable[..., None]  # (kind, target, detail, at=monotonic start)


class FaultInjector:
    """Runs the schedule in a thread against an `Emulation`, recording each action."""

    def __init__(self, emu, faults: FaultsConfig, record: Record) -> None:
        self.emu, self.faults, self.record = emu, faults, record
        self.thread: threading.Thread | None = None
        self.stopped = threading.Event()
        self.stress: dict[str, list[subprocess.Popen]] = {}
        self.errors: list[str] = []
        self.t0 = 0.0
        # called with the node name when a crashed node powers up again (it boots its
        # services: the pipeline restarts the stages that lived there)
        self.on_restore: list = []
        # (node, {"noise_sigma", "stuck"} or None) -> None: the sensors of the workload
        self.on_sensor: list = []

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
                self.record(f"fault.{a.action}", a.target or _groups(a),
                            {"scheduled_s": a.at_s, **detail}, at=started)
            except Exception as e:  # a fault that did not happen makes the run INVALID
                self.errors.append(f"{a.action} {a.target or ''} at {a.at_s}s: {e}")
                self.record("fault.error", a.target or _groups(a),
                            {"scheduled_s": a.at_s, "action": a.action, "error": str(e)},
                            at=started)

    def stop(self) -> None:
        self.stopped.set()
        if self.thread:
            self.thread.join(timeout=10)
        for procs in self.stress.values():
            for p in procs:
                p.kill()
                p.wait()
        self.stress.clear()

    def apply(self, a: FaultAction) -> dict:
        emu = self.emu
        t = a.target or ""
        if a.action == "crash":
            emu.silence_node(t, True)
            return {"killed": emu.nodes[t].kill_all()}
        if a.action == "restore":
            emu.silence_node(t, False)
            for hook in self.on_restore:
                hook(t)
            return {}
        if a.action == "kill":
            return {"killed": emu.nodes[t].kill_all()}
        if a.action == "hang":
            return {"stopped": emu.nodes[t].signal_all(signal.SIGSTOP)}
        if a.action == "resume":
            return {"resumed": emu.nodes[t].signal_all(signal.SIGCONT)}
        if a.action == "throttle":
            emu.nodes[t].cgroup.set_cpu(a.cpu_pct / 100)
            return {"cpu_pct": a.cpu_pct}
        if a.action == "unthrottle":
            emu.nodes[t].cgroup.set_cpu(emu.topo.node(t).cpu)
            return {"cpu": emu.topo.node(t).cpu}
        if a.action == "contention":
            busy = [sys.executable, "-c", "while True: pass"]
            self.stress.setdefault(t, []).extend(
                emu.nodes[t].popen(busy) for _ in range(a.workers))
            return {"workers": a.workers}
        if a.action in ("sensor_noise", "sensor_clean"):
            if not self.on_sensor:
                raise ValueError(f"{a.action}: no sensor process runs (set a workload)")
            mode = ({"noise_sigma": a.noise_sigma, "stuck": a.stuck}
                    if a.action == "sensor_noise" else None)
            for hook in self.on_sensor:
                hook(t, mode)
            return mode or {}
        if a.action == "contention_end":
            procs = self.stress.pop(t, [])
            for p in procs:
                p.kill()
                p.wait()
            return {"stopped": len(procs)}
        if a.action == "link_down":
            emu.set_link_up(t, False)
            return {}
        if a.action == "link_up":
            emu.set_link_up(t, True)
            return {}
        if a.action == "link_degrade":
            change = a.change()
            if change.set_fields():
                emu.set_link(t, change, a.direction)
            if a.trace:
                emu.follow_trace(t, a.direction, a.trace)
            return {"direction": a.direction, **change.set_fields(),
                    **({"trace": a.trace} if a.trace else {})}
        if a.action == "link_restore":
            emu.restore_link(t)
            return {}
        if a.action == "partition":
            return {"table": emu.partition(a.groups), "groups": a.groups}
        if a.action == "heal":
            emu.heal()
            return {}
        raise ValueError(f"unknown action {a.action}")


def _groups(a: FaultAction) -> str:
    return "|".join(",".join(g) for g in a.groups)
