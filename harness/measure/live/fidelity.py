"""Measure shaped links against their configuration: the emulator checks itself.

Delay by UDP echo between the link's two ends, less the same probe over the
sending node's loopback right after it (what the machine's load alone costs the two
probe processes at that moment; one-way = the difference of the medians / 2),
jitter as the RTT spread, bandwidth by an iperf3 TCP flow a -> b, judged against
the goodput the cap allows (the cap counts whole frames, iperf3 counts payload: at a
1500-byte MTU with TCP timestamps 1448 of every 1514 bytes, so a perfect 100 Mbit/s
link carries 95.6 Mbit/s of TCP payload; a link carried between hosts, at the tunnel's
MTU of 1450, 1398 of every 1464: 95.5). A link out of
tolerance is measured again (up to `attempts` times) so that one burst of load on a
shared machine is not reported as the emulator's error, while a link that is wrong
stays wrong in every attempt. Results, every attempt included, go to
`fidelity.json`; links outside tolerance are flagged, never silently accepted.
"""

from __future__ import annotations

import json
import math
import subprocess
import time

from harness.core.config import FidelityConfig
from harness.emulation.network import Emulation, LinkState
from harness.emulation.tc import EmulationError

ECHO_PORT = 7907
IPERF_PORT = 7908
ETHERNET = 14  # a full frame as htb counts it: the link's MTU + the Ethernet header


def _start_ready(node, argv: list[str]) -> subprocess.Popen:
    """Start a probe server and wait for its `listening` line."""
    p = node.popen(argv, stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if "listening" not in line:
        p.kill()
        raise EmulationError(f"{node.name}: probe server did not start")
    return p


def measure_rtt(emu: Emulation, a: str, b: str, count: int, interval_ms: float) -> dict:
    def py(node: str) -> list[str]:
        return [emu.nodes[node].python, "-m", "harness.measure.node.probe"]

    server = _start_ready(emu.nodes[b], py(b) + ["echo", "--bind", emu.ips[b],
                                              "--port", str(ECHO_PORT), "--idle-s", "2"])
    try:
        out = emu.nodes[a].run(py(a) + ["rtt", emu.ips[b], "--port", str(ECHO_PORT),
                                     "--count", str(count), "--interval-ms", str(interval_ms)],
                               timeout=count * interval_ms / 1000 + 30)
    finally:
        server.kill()
        server.wait()
    return json.loads(out.strip().splitlines()[-1])


def measure_tcp(emu: Emulation, a: str, b: str, duration_s: float) -> tuple[float, int]:
    """(goodput in Mbit/s, TCP payload bytes per full segment) of an iperf3 flow a -> b."""
    server = emu.nodes[b].popen(["iperf3", "-s", "-1", "-B", emu.ips[b],
                                       "-p", str(IPERF_PORT)])
    try:
        for _ in range(50):
            try:
                out = emu.nodes[a].run(["iperf3", "-c", emu.ips[b], "-p", str(IPERF_PORT),
                                        "-t", str(duration_s), "-J"],
                                       timeout=duration_s + 30)
                break
            except EmulationError as e:
                if "refused" not in str(e):
                    raise
                time.sleep(0.05)
        else:
            raise EmulationError(f"{b}: iperf3 server did not start")
        return _received(out, a, b)
    finally:
        server.kill()
        server.wait()


def _received(iperf3_json: str, a: str, b: str) -> tuple[float, int]:
    """The receiver's goodput and the flow's MSS from `iperf3 -J`, or what iperf3 said
    instead of a result (on a busy machine it reports an error in the same JSON and no
    `sum_received`)."""
    try:
        result = json.loads(iperf3_json)
    except ValueError:
        raise EmulationError(f"iperf3 {a} -> {b}: not JSON: {iperf3_json[:200]!r}") from None
    try:
        return (result["end"]["sum_received"]["bits_per_second"] / 1e6,
                int(result["start"]["tcp_mss_default"]))
    except (KeyError, TypeError, ValueError):
        why = result.get("error") or "no end.sum_received or start.tcp_mss_default in its report"
        raise EmulationError(f"iperf3 {a} -> {b}: {why}") from None


def goodput_mbit(cap_mbit: float, mss: int, mtu: int = 1500) -> float:
    """The TCP payload rate a link capped at `cap_mbit` carries when it is exact: `mss`
    bytes of every full frame (`mtu` + Ethernet; a link carried between hosts has the
    tunnel's smaller MTU, so a larger share of each frame is headers)."""
    if not 0 < mss <= mtu - 40:  # 40: IPv4 and TCP headers
        raise EmulationError(f"TCP MSS {mss}: not a segment of a {mtu}-byte MTU link")
    return cap_mbit * mss / (mtu + ETHERNET)


def expected_rtt_stdev(st: LinkState) -> float:
    """RTT stdev when each direction's delay is uniform in [d - j, d + j]."""
    return math.sqrt(((st.fwd.props.jitter_ms or 0) ** 2 + (st.rev.props.jitter_ms or 0) ** 2)
                     / 3)


def measure_delay(emu: Emulation, a: str, b: str, cfg: FidelityConfig) -> dict:
    """One attempt: the link's RTT and, right after, the loopback reference on a."""
    link = measure_rtt(emu, a, b, cfg.probes, cfg.interval_ms)
    ref = measure_rtt(emu, a, a, cfg.probes, cfg.interval_ms)
    one_way = (link.get("median_ms", math.nan) - ref.get("median_ms", math.nan)) / 2
    return {"one_way_ms": one_way, "rtt_median_ms": link.get("median_ms"),
            "rtt_p99_ms": link.get("p99_ms"), "rtt_stdev_ms": link.get("stdev_ms"),
            "reference_median_ms": ref.get("median_ms"),
            "reference_p99_ms": ref.get("p99_ms"),
            "probe_loss_pct": 100 * (1 - link["received"] / link["sent"])}


def measure_real(emu: Emulation, name: str, cfg: FidelityConfig) -> dict:
    """A real link is measured, not judged: what the hosts' network did (one-way delay,
    RTT, its spread and probe loss, and TCP throughput a -> b when bandwidth is measured)."""
    st = emu.links[name]
    a, b = st.spec.a, st.spec.b
    m = measure_delay(emu, a, b, cfg)
    res = {"a": a, "b": b, "real": True,
           "delay_ms": {"configured": None, "measured": m["one_way_ms"],
                        "of_which_between_hosts": st.extra_delay_ms,
                        "rtt_median_ms": m["rtt_median_ms"], "rtt_p99_ms": m["rtt_p99_ms"],
                        "reference_rtt_median_ms": m["reference_median_ms"], "ok": None,
                        "attempts": [m]},
           "jitter_ms": {"configured": None, "rtt_stdev_measured": m["rtt_stdev_ms"]},
           "probe_loss_pct": m["probe_loss_pct"]}
    if cfg.bw_duration_s > 0:
        got, mss = measure_tcp(emu, a, b, cfg.bw_duration_s)
        res["bw_mbit"] = {"configured": None, "measured_tcp": got, "mss": mss, "ok": None}
    return res


def check_link(emu: Emulation, name: str, cfg: FidelityConfig) -> dict:
    st = emu.links[name]
    if st.spec.real:
        return measure_real(emu, name, cfg)
    a, b = st.spec.a, st.spec.b
    # a link carried between emulated hosts: its own delay on top of the LAN's
    want_ms = ((st.fwd.props.delay_ms or 0) + (st.rev.props.delay_ms or 0)) / 2 \
        + st.extra_delay_ms
    attempts: list[dict] = []
    for _ in range(cfg.attempts):
        attempts.append(measure_delay(emu, a, b, cfg))
        if abs(attempts[-1]["one_way_ms"] - want_ms) <= cfg.delay_tol_ms:
            break
    last = attempts[-1]
    res = {
        "a": a, "b": b,
        "delay_ms": {"configured": want_ms, "measured": last["one_way_ms"],
                     "of_which_between_hosts": st.extra_delay_ms,
                     "rtt_p99_ms": last["rtt_p99_ms"],
                     "reference_rtt_median_ms": last["reference_median_ms"],
                     "ok": abs(last["one_way_ms"] - want_ms) <= cfg.delay_tol_ms,
                     "attempts": attempts},
        "jitter_ms": {"configured": st.fwd.props.jitter_ms,
                      "rtt_stdev_expected": expected_rtt_stdev(st),
                      "rtt_stdev_measured": last["rtt_stdev_ms"]},
        "probe_loss_pct": last["probe_loss_pct"],
    }
    bw = st.fwd.props.bw_mbit or 0
    if bw > 0 and cfg.bw_duration_s > 0:
        got, mss = measure_tcp(emu, a, b, cfg.bw_duration_s)
        want = goodput_mbit(bw, mss, st.mtu)
        res["bw_mbit"] = {"configured": bw, "measured_tcp": got, "expected_tcp": want,
                          "mss": mss, "ok": abs(got - want) / want * 100 <= cfg.bw_tol_pct}
    return res


def check_links(emu: Emulation, cfg: FidelityConfig) -> dict:
    names = cfg.links or list(emu.links)
    links = {n: check_link(emu, n, cfg) for n in names}
    out_of_tol = [n for n, r in links.items() if not r.get("real")
                  and (not r["delay_ms"]["ok"] or not r.get("bw_mbit", {"ok": True})["ok"])]
    return {"shaper": emu.shaper.name, "links": links, "out_of_tolerance": out_of_tol,
            "tolerance": {"delay_ms": cfg.delay_tol_ms, "bw_pct": cfg.bw_tol_pct}}
