"""Fault actions on nodes of a live device_edge_cloud network (root), each one measured:
crash, kill, hang (and what starts or crashes during one), CPU throttle and contention,
and a schedule with its inverse.
Link faults are in test_faults_links_live.py; the shared kit in faults_kit.py.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from harness.emulation import freezer
from harness.faults.injector import FaultInjector
from harness.faults.schedule import FaultsConfig
from tests.faults_kit import (  # the fixtures (emu, procs, record) come via conftest.py
    BUSY,
    act,
    connect,
    cpu_cores,
    injector,
    rtt,
    start_echo,
    start_listener,
)
from tests.helpers import on_time

pytestmark = [
    pytest.mark.needs_root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces, tc, cgroups"),
]


# ---------------------------------------------------------------- node faults


def test_crash_kills_and_silences_then_restore(emu, procs, record) -> None:
    inj = injector(emu, record)
    echo = start_echo(emu, procs, "e1", 7201)
    before = rtt(emu, "d1", "e1", 7201)
    assert before["received"] == before["sent"], before
    # With the link carrying, a port without listener is refused at once.
    assert connect(emu, "d1", "e1", 7202)["result"] == "refused"

    detail = inj.apply(act("crash", "e1"))
    try:
        assert detail["killed"] >= 1
        echo.wait(timeout=2)  # raises TimeoutExpired if the echo survived the crash
        assert emu.nodes["e1"].processes() == []
        # Like a machine without power: no RST, no ICMP, the connect times out.
        c = connect(emu, "d1", "e1", 7202, timeout_s=1.5)
        print(f"connect to crashed e1: {c}")
        assert c["result"] == "timeout", c
        assert c["elapsed_s"] >= 1.4, c
    finally:
        inj.apply(act("restore", "e1"))

    start_echo(emu, procs, "e1", 7203)
    after = rtt(emu, "d1", "e1", 7203)
    assert after["received"] == after["sent"], after


def test_kill_processes_die_but_os_answers(emu, procs, record) -> None:
    inj = injector(emu, record)
    listener = start_listener(emu, procs, "e1", 7211)
    assert connect(emu, "d1", "e1", 7211)["result"] == "connected"

    detail = inj.apply(act("kill", "e1"))
    assert detail["killed"] >= 1
    listener.wait(timeout=2)
    assert emu.nodes["e1"].processes() == []
    c = connect(emu, "d1", "e1", 7211, timeout_s=1.5)
    print(f"connect to killed e1: {c}")
    assert c["result"] == "refused", c  # the kernel still answers with RST
    assert c["elapsed_s"] < 0.5, c


def test_hang_then_resume(emu, procs, record) -> None:
    inj = injector(emu, record)
    echo = start_echo(emu, procs, "e1", 7221)
    before = rtt(emu, "d1", "e1", 7221)
    assert before["received"] == before["sent"], before

    detail = inj.apply(act("hang", "e1"))
    try:
        assert detail["stopped"] >= 1
        hung = rtt(emu, "d1", "e1", 7221, count=4, timeout_ms=150)
        assert hung["received"] == 0, hung
        assert echo.poll() is None  # stopped, not dead
        if detail["via"] == "cgroup.freeze":  # /proc shows a frozen task as sleeping (S)
            assert frozen_with(emu.nodes["e1"], echo.pid)
        else:
            state = Path(f"/proc/{echo.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            assert state == "T", state
    finally:
        inj.apply(act("resume", "e1"))

    after = rtt(emu, "d1", "e1", 7221)
    assert after["received"] == after["sent"], after
    assert echo.poll() is None


def frozen_with(node, pid: int) -> bool:
    """`pid` is in the node's freezer cgroup, which says all its tasks are frozen."""
    d = node.resources.freezer()[0]
    return pid in {int(p) for p in (d / "cgroup.procs").read_text().split()} \
        and "frozen 1" in (d / "cgroup.events").read_text()


def test_a_hang_freezes_what_starts_during_it(emu, record) -> None:
    """The freezer stops the node's processes at once and any started after the hang
    began, here by a contention fault (a SIGSTOP loop misses those: this busy loop would
    take a core); the contention's end kills them frozen, and resume thaws the node."""
    if freezer.v2_root() is None:
        pytest.skip(freezer.NO_V2)
    inj = injector(emu, record)
    node = emu.nodes["e1"]
    detail = inj.apply(act("hang", "e1"))
    try:
        assert inj.apply(act("contention", "e1", workers=1)) == {"workers": 1}
        late = inj.stress["e1"][0]
        time.sleep(0.2)  # (it ran for the moment between its exec and joining the cgroup)
        used = cpu_cores(node.cgroup, 1.0)
        print(f"hung e1 with a busy loop started after the hang: {used:.3f} cores "
              f"({detail})")
        assert used < 0.05, used
        assert late.poll() is None
        assert detail["via"] == "cgroup.freeze", detail
        assert frozen_with(node, late.pid)
        assert inj.apply(act("contention_end", "e1")) == {"stopped": 1}  # SIGKILL, frozen
    finally:
        inj.apply(act("resume", "e1"))
        inj.stop()
    assert "frozen 0" in (node.resources.freezer()[0] / "cgroup.events").read_text()


def test_a_crash_during_a_hang_kills_and_ends_it(emu, procs, record) -> None:
    """A hung node that loses power: its frozen processes die at once (a v1 freezer or
    `docker pause` would hold the SIGKILL until a thaw), and what starts after the
    restore runs."""
    inj = injector(emu, record)
    echo = start_echo(emu, procs, "e1", 7231)
    inj.apply(act("hang", "e1"))
    try:
        detail = inj.apply(act("crash", "e1"))
        assert detail["killed"] >= 1
        echo.wait(timeout=2)  # raises TimeoutExpired if the frozen echo survived
        assert emu.nodes["e1"].processes() == []
    finally:
        inj.apply(act("restore", "e1"))
    start_echo(emu, procs, "e1", 7232)
    after = rtt(emu, "d1", "e1", 7232)
    assert after["received"] == after["sent"], after


# ---------------------------------------------------------------- CPU faults


def test_throttle_and_unthrottle(emu, procs, record) -> None:
    inj = injector(emu, record)
    cg = emu.nodes["e1"].cgroup
    busy = procs.add(emu.nodes["e1"].popen(BUSY))
    try:
        inj.apply(act("throttle", "e1", cpu_pct=30))
        time.sleep(0.3)  # let the quota take hold
        throttled = cpu_cores(cg, 1.5)
        print(f"throttled to 30 %: {throttled:.3f} cores")
        assert busy.poll() is None
        assert abs(throttled - 0.30) <= 0.08, throttled
    finally:
        inj.apply(act("unthrottle", "e1"))
    time.sleep(0.2)
    free = cpu_cores(cg, 1.5)
    print(f"unthrottled: {free:.3f} cores")
    assert free > 0.6, free


def test_contention_adds_and_removes_a_busy_process(emu, record) -> None:
    inj = injector(emu, record)
    node = emu.nodes["e2"]
    base = set(node.processes())
    idle = cpu_cores(node.cgroup, 0.5)
    try:
        assert inj.apply(act("contention", "e2", workers=1)) == {"workers": 1}
        extra = set(node.processes()) - base
        assert len(extra) == 1, extra
        busy = cpu_cores(node.cgroup, 1.0)
        print(f"e2 idle {idle:.3f} cores, with contention {busy:.3f} cores")
        assert busy > 0.6, busy
    finally:
        assert inj.apply(act("contention_end", "e2")) == {"stopped": 1}
    assert set(node.processes()) == base
    after = cpu_cores(node.cgroup, 0.5)
    assert after < 0.1, after
    inj.stop()


# ---------------------------------------------------------------- the schedule


def test_schedule_for_s_records_fault_and_inverse(emu, record) -> None:
    faults = FaultsConfig.parse({"actions": [{"at_s": 0.2, "action": "link_down",
                                              "target": "d1-e1", "for_s": 0.3}]})
    faults.check_against(emu.topo)
    inj = FaultInjector(emu, faults, record)
    t0 = time.monotonic()
    inj.start(t0)
    try:
        time.sleep(0.35 - (time.monotonic() - t0))
        assert not emu.links["d1-e1"].admin_up  # down between the two actions
        time.sleep(max(0.0, 0.8 - (time.monotonic() - t0)))
        assert inj.thread is not None and not inj.thread.is_alive()
    finally:
        inj.stop()
    assert inj.errors == []
    events = record.events
    assert [(k, t) for k, t, _, _ in events] == [("fault.link_down", "d1-e1"),
                                                 ("fault.link_up", "d1-e1")]
    # Each event carries the monotonic time its action began (Record's `at`).
    assert all(at is not None for at in record.starts), record.starts
    times = [at - t0 for *_, at in events]
    print("event times (s):", [round(t, 4) for t in times])
    assert on_time(times[0], 0.2) and on_time(times[1], 0.5), times
    assert [d["scheduled_s"] for _, _, d, _ in events] == [0.2, 0.5]
    assert emu.links["d1-e1"].admin_up
