"""A link following a bandwidth trace, on a fake backend (no root): what each window
tells htb, and what becomes of a follower's errors."""

from __future__ import annotations

import threading
import time

import pytest

from harness.emulation.ledger import Ledger
from harness.emulation.network import Emulation
from harness.emulation.shapers.netem import NetemShaper
from harness.emulation.tc import EmulationError
from tests.emulation_fakes import FakeBackend, record_host_commands
from tests.helpers import exp_for

LINK = "h1-h2"


@pytest.fixture
def emu(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_STATE_DIR", str(tmp_path / "state"))
    record_host_commands(monkeypatch)
    exp = exp_for("topology=pair", "network.tcp_cc=reno")
    e = Emulation(exp.topology, exp.network, FakeBackend(), NetemShaper(check=False),
                  Ledger.new(), exp.seed)
    e.start()
    yield e
    e.stop()


def rate_changes(emu: Emulation) -> list[str]:
    """The htb rates h1 was told, in order."""
    calls = emu.backend.calls  # type: ignore[attr-defined]
    return [argv[argv.index("rate") + 1] for name, argv, _ in calls
            if name == "h1" and argv[:3] == ["tc", "class", "change"]]


def wait_for(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_an_outage_window_is_applied_as_htb_minimum_not_as_no_cap(emu, tmp_path) -> None:
    trace = tmp_path / "gap.down"
    # 100 ms with 50 delivery opportunities (50 x 1500 B in 0.1 s = 6 Mbit/s), 200 ms
    # with none (an outage), then 50 again
    trace.write_text("".join(f"{ms}\n" for ms in [*range(0, 100, 2), *range(300, 400, 2)]))
    emu.backend.calls.clear()  # type: ignore[attr-defined]
    emu.follow_trace(LINK, "fwd", str(trace))
    wait_for(lambda: len(rate_changes(emu)) >= 4)
    emu.stop_traces(LINK)
    # the outage: the rate at which one 1500-byte frame takes the rest of it (200 ms, then
    # 100), never "no cap" (10000000kbit)
    assert rate_changes(emu)[:4] == ["6000kbit", "60kbit", "120kbit", "6000kbit"]
    assert emu.trace_errors() == []


def _fail_trace_steps(emu: Emulation, monkeypatch) -> None:
    """h1's tc fails when a trace follower changes the rate (its first window, applied by
    the caller, and a restore's rate change still work)."""
    node = emu.nodes["h1"]
    real = node.net_run

    def net_run(argv, input=None, timeout=30):
        if threading.current_thread().name.startswith("trace-"):
            raise EmulationError("tc class change dev h1-eth0: RTNETLINK answers: "
                                 "No buffer space available")
        return real(argv, input, timeout)

    monkeypatch.setattr(node, "net_run", net_run)


def test_a_follower_error_is_still_reported_after_restore(emu, tmp_path, monkeypatch) -> None:
    trace = tmp_path / "t.down"
    trace.write_text("".join(f"{ms}\n" for ms in range(0, 400, 2)))
    _fail_trace_steps(emu, monkeypatch)
    emu.follow_trace(LINK, "fwd", str(trace))
    follower = emu.links[LINK].traces[0]
    wait_for(lambda: follower.error is not None)
    emu.restore_link(LINK)  # link_degrade ... for_s: its inverse stops the follower
    assert not emu.links[LINK].traces
    errors = emu.trace_errors()
    assert len(errors) == 1 and errors[0].startswith(f"{LINK}: ")
    assert "No buffer space available" in errors[0]
    # a new trace on the link replaces the old follower, not its error
    emu.follow_trace(LINK, "fwd", str(trace))
    emu.stop_traces(LINK)
    assert emu.trace_errors() == errors


def test_a_trace_error_during_a_degrade_makes_the_run_invalid(tmp_path, monkeypatch) -> None:
    """The whole run on the fake backend: `link_degrade` with a trace `for_s`, a tc that
    fails for the follower's steps only; the summary is INVALID and says why."""
    import json

    from harness.run import phases

    monkeypatch.setenv("HARNESS_STATE_DIR", str(tmp_path / "state"))
    record_host_commands(monkeypatch)
    trace = tmp_path / "t.down"
    trace.write_text("".join(f"{ms}\n" for ms in range(0, 400, 2)))
    exp = exp_for("topology=pair", "network.tcp_cc=reno", "run.duration_s=0.8",
                  "backend._target_=tests.emulation_fakes.FakeBackend",
                  "shaper._target_=harness.emulation.shapers.netem.NetemShaper",
                  "+shaper.check=false",
                  f"faults.actions=[{{at_s:0.1,action:link_degrade,target:{LINK},"
                  f"trace:'{trace}',for_s:0.4}}]")
    started = Emulation.start

    def start(self) -> None:
        started(self)
        _fail_trace_steps(self, monkeypatch)

    monkeypatch.setattr(Emulation, "start", start)
    assert phases.execute(exp, tmp_path / "run") == 1
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["verdict"] == "INVALID"
    assert any(r.startswith(f"{LINK}: ") and "No buffer space available" in r
               for r in summary["verdict_reasons"]), summary["verdict_reasons"]
