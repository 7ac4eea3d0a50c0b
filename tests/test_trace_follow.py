"""A link following a bandwidth trace, on a fake backend (no root): what each window
tells htb."""

from __future__ import annotations

import time

import pytest

from harness.emulation.ledger import Ledger
from harness.emulation.network import Emulation
from harness.emulation.shapers.netem import NetemShaper
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
