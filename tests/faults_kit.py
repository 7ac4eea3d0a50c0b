"""What the live fault tests share: a device_edge_cloud network per test module, the
safety net that puts it back after each test, and the probes that measure a fault.

One network serves a module's tests (module fixture); every test undoes what it
changed, and a per-test safety net puts the network back to its configured
state (links up, no partition, no throttle, no stray processes) so a failing
test cannot make the next one fail. Test modules import the fixtures by name.
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

import pytest

from harness.faults.injector import FaultInjector
from harness.faults.schedule import FaultAction, FaultsConfig, parse_action
from harness.run.experiment import compose_experiment as exp_for
from tests.helpers import PY, SHARED_TRACES

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


