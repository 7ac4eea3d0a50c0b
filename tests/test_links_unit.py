"""tc command builders and Mahimahi traces, without root."""

from __future__ import annotations

import json

import pytest

from harness.core.config import ConfigError, LinkProps
from harness.emulation.tc import DirState, EmulationError, htb_cmds, leaf_cmd, rate_arg, rate_cmd
from harness.emulation.traces import applied_rates, load_mahimahi, rates_mbit
from tests.helpers import SHARED_TRACES


def props(**kw) -> LinkProps:
    base = LinkProps(bw_mbit=0, delay_ms=0, jitter_ms=0, loss_pct=0, queue_pkts=1000)
    return LinkProps(**kw).over(base)


def test_rate_arg() -> None:
    assert rate_arg(10) == "10000kbit"
    assert rate_arg(0.5) == "500kbit"
    assert rate_arg(None) == "10000000kbit"  # no cap
    assert rate_arg(0) == "1kbit"  # a rate of 0 (a trace outage) is htb's minimum
    assert rate_arg(0.0000001) == "1kbit"


def test_a_configured_bw_of_0_is_still_no_cap() -> None:
    """network.bw_mbit=0 (and a link that inherits it) means unlimited, as documented."""
    for bw in (0, None):
        cmds = htb_cmds("h1-eth0", DirState(props(bw_mbit=bw)), netem=False)
        assert cmds[1][-4:] == ["rate", "10000000kbit", "ceil", "10000000kbit"]


def test_htb_then_netem_leaf() -> None:
    cmds = htb_cmds("h1-eth0", DirState(props(bw_mbit=10, delay_ms=5, jitter_ms=1,
                                              loss_pct=2)), netem=True)
    assert cmds[0][:5] == ["qdisc", "replace", "dev", "h1-eth0", "root"]
    assert "10000kbit" in cmds[1]
    leaf = " ".join(cmds[2])
    assert "netem limit 1000 delay 5ms 1ms loss 2%" in leaf


def test_fifo_leaf_for_userspace_shaper() -> None:
    cmd = leaf_cmd("replace", "x", DirState(props(delay_ms=5, queue_pkts=50)), netem=False)
    assert cmd[-3:] == ["pfifo", "limit", "50"]


def test_down_is_total_loss_under_netem() -> None:
    cmd = leaf_cmd("change", "x", DirState(props(delay_ms=5), up=False), netem=True)
    assert "100.0%" in cmd or "100%" in cmd


def test_rate_change_is_in_place() -> None:
    assert rate_cmd("x", 20)[:2] == ["class", "change"]


def test_mahimahi_rates_and_an_outage(tmp_path) -> None:
    f = tmp_path / "t"
    # 100 ms at one packet per ms (12 Mbit/s), 100 ms with no delivery at all (an
    # outage), then 100 ms at one per 10 ms (1.2 Mbit/s)
    f.write_text("\n".join([str(i) for i in range(100)] + [str(200 + 10 * i)
                                                           for i in range(10)] + ["300"]))
    rates = rates_mbit(load_mahimahi(f), 100)
    assert rates == [pytest.approx(12.0), 0.0,
                     pytest.approx(1.2 + 0.12)]  # the closing stamp at 300 lands here
    # what htb is told for each window: in the outage, one 1500-byte frame in its 100 ms
    # (120 kbit/s), not "no cap"
    assert [rate_cmd("x", r)[-3] for r in applied_rates(rates, 100)] == [
        "12000kbit", "120kbit", "1320kbit"]


def test_an_outage_is_one_frame_over_what_is_left_of_it() -> None:
    """htb charges the frame it lets go at the class's rate: each outage window gets the
    rate at which one frame (12,000 bits) lasts to the outage's end, so the debt ends with
    it. Outages run on across the trace's loop."""
    got = applied_rates([0.0, 6.0, 0.0, 0.0, 0.0, 3.0, 0.0], 100)
    # window 6 and 0: 200 then 100 ms left (60, 120 kbit/s); windows 2-4: 300, 200, 100
    assert got == pytest.approx([0.12, 6.0, 0.04, 0.06, 0.12, 3.0, 0.06])


@pytest.mark.parametrize("text,why", [("", "empty"), ("1\nx\n", "not an integer"),
                                      ("5\n3\n", "non-decreasing")])
def test_bad_traces(tmp_path, text, why) -> None:
    f = tmp_path / "t"
    f.write_text(text)
    with pytest.raises(ConfigError, match=why):
        load_mahimahi(f, "faults.actions[0].trace")


def test_missing_trace_names_key() -> None:
    with pytest.raises(ConfigError, match=r"^faults.actions\[0\].trace="):
        load_mahimahi("/nonexistent/trace", "faults.actions[0].trace")


@pytest.mark.skipif(not (SHARED_TRACES / "TMobile-LTE-short.down").exists(),
                    reason="shared cellular traces not present beside the repo")
def test_real_cellular_trace() -> None:
    stamps = load_mahimahi(SHARED_TRACES / "TMobile-LTE-short.down")
    rates = rates_mbit(stamps, 100)
    mean = len(stamps) * 1500 * 8 / (stamps[-1] / 1000) / 1e6
    assert sum(rates) / len(rates) == pytest.approx(mean, rel=0.01)
    assert max(rates) > 2 * mean  # a cellular link varies a lot


def test_iperf3_errors_are_named_not_key_errors() -> None:
    from harness.measure.live.fidelity import _received as _received_mbit

    ok = json.dumps({"start": {"tcp_mss_default": 1448},
                     "end": {"sum_received": {"bits_per_second": 9.6e6}}})
    assert _received_mbit(ok, "h1", "h2") == (pytest.approx(9.6), 1448)
    err = json.dumps({"start": {}, "end": {}, "error": "unable to receive control message"})
    with pytest.raises(EmulationError, match="iperf3 h1 -> h2: unable to receive control"):
        _received_mbit(err, "h1", "h2")
    with pytest.raises(EmulationError, match="not JSON"):
        _received_mbit("iperf3: error", "h1", "h2")


def test_a_bandwidth_cap_is_judged_by_the_payload_it_allows() -> None:
    """htb counts whole frames, iperf3 counts TCP payload: an exact 100 Mbit/s link with
    TCP timestamps (MSS 1448, 1514-byte frames) carries 95.6 Mbit/s of payload."""
    from harness.measure.live.fidelity import goodput_mbit

    assert goodput_mbit(100, 1448) == pytest.approx(95.64, abs=0.01)
    assert goodput_mbit(10, 1460) == pytest.approx(9.643, abs=0.001)
    # carried between hosts: the tunnel's 1450-byte MTU, 1398 of every 1464 bytes
    assert goodput_mbit(100, 1398, mtu=1450) == pytest.approx(95.49, abs=0.01)
    with pytest.raises(EmulationError, match="TCP MSS 1448: not a segment of a 1450-byte"):
        goodput_mbit(100, 1448, mtu=1450)
    with pytest.raises(EmulationError, match="TCP MSS 22016"):
        goodput_mbit(100, 22016)  # loopback's MSS: not a 1500-byte MTU link
