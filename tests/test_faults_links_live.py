"""Fault actions on links of a live device_edge_cloud network (root), each one measured:
link down and up, partition and heal, degradation following Mahimahi traces.
Node faults are in test_faults_live.py; the shared kit in faults_kit.py.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.faults_kit import (  # the fixtures (emu, procs, record) come via conftest.py
    REAL_TRACE,
    act,
    htb_rate_mbit,
    injector,
    near,
    rtt,
    sample_rates,
    start_echo,
    wait_trace_started,
)

pytestmark = [
    pytest.mark.needs_root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces, tc, cgroups"),
]


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


