"""Fault actions on a live device_edge_cloud network (root): each one measured.

One network serves most tests (module fixture); every test undoes what it
changed, and a per-test safety net puts the network back to its configured
state (links up, no partition, no throttle, no stray processes) so a failing
test cannot make the next one fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.faults.injector import FaultInjector
from harness.faults.schedule import FaultAction, FaultsConfig, parse_action
from harness.run.experiment import compose_experiment as exp_for
from tests.helpers import PY, SHARED_TRACES, on_time

pytestmark = [
    pytest.mark.needs_root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces, tc, cgroups"),
]

REAL_TRACE = SHARED_TRACES / "TMobile-LTE-short.down"
PROBE = [PY, "-m", "harness.probe"]

# TCP connect from inside a node: one JSON line with how it ended and how long it took.
CONNECT = """
import json, socket, sys, time
s = socket.socket()
s.settimeout(float(sys.argv[3]))
t = time.monotonic()
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    r = "connected"
except TimeoutError:
    r = "timeout"
except ConnectionRefusedError:
    r = "refused"
except OSError as e:
    r = "oserror:" + (e.strerror or str(e.errno))
print(json.dumps({"result": r, "elapsed_s": time.monotonic() - t}))
"""

# A TCP listener that accepts and closes, printing one line once it listens.
LISTEN = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(16)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.close()
"""

BUSY = [PY, "-c", "while True: pass"]


# ---------------------------------------------------------------- helpers


class Procs:
    """Background processes of one test; all killed on exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def add(self, p: subprocess.Popen) -> subprocess.Popen:
        self.procs.append(p)
        return p

    def kill_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGCONT)  # a hung (stopped) process too
                p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)
            for f in (p.stdout, p.stderr, p.stdin):
                if f:
                    f.close()


@pytest.fixture
def procs() -> Iterator[Procs]:
    ps = Procs()
    try:
        yield ps
    finally:
        ps.kill_all()


def wait_line(p: subprocess.Popen, want: str, timeout: float = 10) -> str:
    assert p.stdout is not None
    ready, _, _ = select.select([p.stdout], [], [], timeout)
    line = p.stdout.readline() if ready else ""
    assert want in line, f"process did not print {want!r} within {timeout}s: {line!r}"
    return line


def start_echo(emu, procs: Procs, node: str, port: int, idle_s: float = 30) -> subprocess.Popen:
    argv = PROBE + ["echo", "--bind", emu.ips[node], "--port", str(port),
                    "--idle-s", str(idle_s)]
    p = procs.add(emu.nodes[node].popen(argv, stdout=subprocess.PIPE, text=True))
    wait_line(p, "listening")
    return p


def start_listener(emu, procs: Procs, node: str, port: int) -> subprocess.Popen:
    p = procs.add(emu.nodes[node].popen([PY, "-c", LISTEN, str(port)], stdout=subprocess.PIPE,
                                        text=True))
    wait_line(p, "listening")
    return p


def rtt(emu, src: str, dst: str, port: int, count: int = 5, interval_ms: float = 20,
        timeout_ms: float = 300) -> dict:
    out = emu.nodes[src].run(PROBE + ["rtt", emu.ips[dst], "--port", str(port), "--count",
                                      str(count), "--interval-ms", str(interval_ms),
                                      "--timeout-ms", str(timeout_ms)], timeout=30)
    return json.loads(out.strip().splitlines()[-1])


def connect(emu, src: str, dst: str, port: int, timeout_s: float = 1.5) -> dict:
    out = emu.nodes[src].run([PY, "-c", CONNECT, emu.ips[dst], str(port), str(timeout_s)],
                             timeout=30)
    return json.loads(out.strip().splitlines()[-1])


def cpu_cores(cgroup, seconds: float) -> float:
    """Mean CPU use of a node cgroup (cores) over `seconds`."""
    u0, t0 = cgroup.cpu_usage_s(), time.monotonic()
    time.sleep(seconds)
    return (cgroup.cpu_usage_s() - u0) / (time.monotonic() - t0)


UNITS = {"bit": 1e-6, "kbit": 1e-3, "mbit": 1.0, "gbit": 1e3}


def htb_rate_mbit(emu, node: str, dev: str) -> float:
    """The rate of the link's htb class 1:1 as `tc class show` reports it, in Mbit/s."""
    out = emu.nodes[node].run(["tc", "class", "show", "dev", dev])
    m = re.search(r"class htb 1:1 .*?\brate (\d+(?:\.\d+)?)([KMG]?bit)\b", out)
    assert m, f"no htb class 1:1 on {node}:{dev}: {out!r}"
    return float(m.group(1)) * UNITS[m.group(2).lower()]


def sample_rates(emu, node: str, dev: str, seconds: float, every_s: float = 0.05) -> list[float]:
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out.append(htb_rate_mbit(emu, node, dev))
        time.sleep(every_s)
    return out


def wait_trace_started(emu, node: str, dev: str, within_s: float = 0.2) -> None:
    """The follower thread applies its first rate a moment after link_degrade returns."""
    deadline = time.monotonic() + within_s
    while htb_rate_mbit(emu, node, dev) >= 1e4:
        assert time.monotonic() < deadline, f"trace rate not applied within {within_s}s"
        time.sleep(0.005)


def near(x: float, want: float, rel: float = 0.10) -> bool:
    return abs(x - want) <= rel * want


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def shared_emu():
    from harness.run.phases import emulated

    with emulated(exp_for("topology=device_edge_cloud", "network.delay_ms=1")) as emu:
        yield emu


@pytest.fixture
def emu(shared_emu):
    """The shared network, checked back to its configured state after each test."""
    yield shared_emu
    e = shared_emu
    for name, node in e.nodes.items():
        node.kill_all()  # SIGCONTs first, so hung processes die too
        e.silence_node(name, False)
        node.cgroup.set_cpu(e.topo.node(name).cpu)
    for name, st in e.links.items():
        if not st.admin_up:
            e.set_link_up(name, True)
        if st.traces:
            e.restore_link(name)
    e.heal()


@pytest.fixture
def record():
    """A `record` callable for FaultInjector collecting (kind, target, detail, t)."""
    events: list[tuple[str, str, dict, float]] = []
    starts: list[float | None] = []  # the `at` (action start) each call passed, if any

    def rec(kind: str, target: str, detail: dict | None = None,
            at: float | None = None) -> None:
        events.append((kind, target, detail or {}, time.monotonic() if at is None else at))
        starts.append(at)

    rec.events = events  # type: ignore[attr-defined]
    rec.starts = starts  # type: ignore[attr-defined]
    return rec


def injector(emu, record) -> FaultInjector:
    return FaultInjector(emu, FaultsConfig(actions=[]), record)


def act(action: str, target: str | None = None, **kw) -> FaultAction:
    return parse_action({"at_s": 0, "action": action, "target": target, **kw}, "test")


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
        state = Path(f"/proc/{echo.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert state == "T", state
    finally:
        inj.apply(act("resume", "e1"))

    after = rtt(emu, "d1", "e1", 7221)
    assert after["received"] == after["sent"], after
    assert echo.poll() is None


# ---------------------------------------------------------------- link and group faults


def test_link_down_up_only_that_link(emu, procs, record) -> None:
    inj = injector(emu, record)
    start_echo(emu, procs, "e1", 7231)
    start_echo(emu, procs, "c1", 7232)
    assert rtt(emu, "d1", "e1", 7231)["received"] == 5

    inj.apply(act("link_down", "d1-e1"))
    try:
        down = rtt(emu, "d1", "e1", 7231, count=4, timeout_ms=150)
        assert down["received"] == 0, down
        other = rtt(emu, "d1", "c1", 7232)
        assert other["received"] == other["sent"], other
    finally:
        inj.apply(act("link_up", "d1-e1"))

    up = rtt(emu, "d1", "e1", 7231)
    assert up["received"] == up["sent"], up


def test_partition_and_heal(emu, procs, record) -> None:
    inj = injector(emu, record)
    start_echo(emu, procs, "c1", 7241)
    start_echo(emu, procs, "e1", 7242)
    assert rtt(emu, "e1", "c1", 7241)["received"] == 5

    detail = inj.apply(act("partition", groups=[["e1", "e2"], ["c1"]]))
    try:
        assert detail["table"]
        # Silence, as in a real partition: sends succeed, nothing comes back (the probe
        # would die of EPERM if the sender's own stack refused the packets).
        cut = rtt(emu, "e1", "c1", 7241, count=4, timeout_ms=150)
        assert cut["received"] == 0, cut
        back = rtt(emu, "c1", "e1", 7242, count=4, timeout_ms=150)
        assert back["received"] == 0, back
        e2_c1 = rtt(emu, "e2", "c1", 7241, count=2, timeout_ms=150)
        assert e2_c1["received"] == 0, e2_c1
        d1_c1 = rtt(emu, "d1", "c1", 7241)
        assert d1_c1["received"] == d1_c1["sent"], d1_c1
        d1_e1 = rtt(emu, "d1", "e1", 7242)
        assert d1_e1["received"] == d1_e1["sent"], d1_e1
    finally:
        inj.apply(act("heal"))

    healed = rtt(emu, "e1", "c1", 7241)
    assert healed["received"] == healed["sent"], healed


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


# ---------------------------------------------------------------- trace-driven bandwidth


def write_step_trace(path: Path) -> Path:
    """1 s at 12 Mbit/s (one 1500 B packet per ms), then 1 s at 1.2 Mbit/s (one per 10 ms)."""
    stamps = list(range(0, 1000)) + list(range(1000, 2000, 10)) + [2000]
    path.write_text("".join(f"{t}\n" for t in stamps))
    return path


def test_link_degrade_follows_mahimahi_trace(emu, record, tmp_path) -> None:
    inj = injector(emu, record)
    st = emu.links["d1-e1"]
    assert htb_rate_mbit(emu, "d1", st.a_dev) >= 1e4  # unlimited: 10 Gbit
    rev_before = htb_rate_mbit(emu, "e1", st.b_dev)
    trace = write_step_trace(tmp_path / "step.trace")
    detail = inj.apply(act("link_degrade", "d1-e1", direction="fwd", trace=str(trace)))
    try:
        assert detail["trace"] == str(trace)
        wait_trace_started(emu, "d1", st.a_dev)
        rates = sample_rates(emu, "d1", st.a_dev, 2.2)
        print("sampled htb rates (Mbit/s):", sorted(set(rates)))
        assert any(near(r, 12.0) for r in rates), rates
        assert any(near(r, 1.2) for r in rates), rates
        assert all(near(r, 12.0) or near(r, 1.2, 0.15) for r in rates), rates
        assert htb_rate_mbit(emu, "e1", st.b_dev) == rev_before  # fwd only
        assert emu.trace_errors() == []
    finally:
        inj.apply(act("link_restore", "d1-e1"))
    time.sleep(0.3)  # a follower still running would move the rate again
    restored = htb_rate_mbit(emu, "d1", st.a_dev)
    assert restored >= 1e4, f"link_restore left the trace rate in place: {restored} Mbit/s"


def test_link_degrade_real_trace_runs_clean(emu, record) -> None:
    if not REAL_TRACE.is_file():
        pytest.skip(f"real trace not found: {REAL_TRACE}")
    inj = injector(emu, record)
    st = emu.links["d1-e1"]
    inj.apply(act("link_degrade", "d1-e1", direction="fwd", trace=str(REAL_TRACE)))
    try:
        wait_trace_started(emu, "d1", st.a_dev)
        rates = sample_rates(emu, "d1", st.a_dev, 1.0, every_s=0.1)
        assert emu.trace_errors() == []
        assert all(t.is_alive() for t in st.traces)
        assert all(r < 1e4 for r in rates), rates  # the trace sets the rate, never unlimited
    finally:
        inj.apply(act("link_restore", "d1-e1"))
    assert st.traces == []


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
