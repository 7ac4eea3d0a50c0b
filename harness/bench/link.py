"""Link fidelity scenarios: each builds its own emulated network the way `python -m harness`
would (same configs, same code path), measures it with the independent probes of
`harness.probe` and iperf3, and returns figures. The bench prints them against
their targets; the tests call the same scenarios with smaller sample counts.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from harness.core.config import LinkProps
from harness.measure.live.fidelity import goodput_mbit, measure_rtt, measure_tcp
from harness.measure.node.probe import percentile
from harness.run.experiment import compose_experiment
from harness.run.lifecycle import emulated

PY = [sys.executable, "-m", "harness.measure.node.probe"]


def rtt_scenario(delay_ms: float, jitter_ms: float = 0.0, probes: int = 300,
                 interval_ms: float = 5.0) -> dict:
    exp = compose_experiment("topology=pair", f"network.delay_ms={delay_ms}",
                             f"network.jitter_ms={jitter_ms}")
    with emulated(exp) as emu:
        r = measure_rtt(emu, "h1", "h2", probes, interval_ms)
        # the same probe over h1's loopback right after: what the machine's load alone
        # does to these two processes' tail now (a busy neighbour, not the delay line)
        ref = measure_rtt(emu, "h1", "h1", probes, interval_ms)
        shaper = emu.shaper.name
    rtts = r["rtts_ms"]
    return {"delay_ms": delay_ms, "jitter_ms": jitter_ms, "shaper": shaper,
            "expected_rtt_ms": 2 * delay_ms, "median_ms": statistics.median(rtts),
            "p90_ms": percentile(rtts, 90), "p99_ms": percentile(rtts, 99),
            "stdev_ms": statistics.pstdev(rtts),
            "iqr_ms": percentile(rtts, 75) - percentile(rtts, 25),
            # two U(-J, J) directions: RTT triangular on +-2J, quartiles +-2J(1 - 1/sqrt 2)
            "expected_iqr_ms": 4 * jitter_ms * (1 - 0.5 ** 0.5),
            "expected_stdev_ms": jitter_ms * (2 / 3) ** 0.5,
            "min_ms": min(rtts), "max_ms": max(rtts), "received": r["received"],
            "sent": r["sent"],
            "reference_p90_ms": percentile(ref["rtts_ms"], 90) if ref["rtts_ms"] else None}


def _datagram_loss(emu, src: str, dst: str, count: int, rate: float, port: int) -> float:
    sink = emu.nodes[dst].popen(PY + ["sink", "--bind", emu.ips[dst], "--port", str(port),
                                      "--idle-s", "1"],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None
        if "listening" not in sink.stdout.readline():
            raise RuntimeError(f"{dst}: sink did not start")
        emu.nodes[src].run(PY + ["blast", emu.ips[dst], "--port", str(port),
                                 "--count", str(count), "--rate", str(rate)],
                           timeout=count / rate + 30)
        out, _ = sink.communicate(timeout=30)
    finally:
        sink.kill()
        sink.wait()
    received = json.loads(out.strip().splitlines()[-1])["received"]
    return 100 * (1 - received / count)


def loss_scenario(loss_pct: float = 5.0, count: int = 10_000, rate: float = 5000) -> dict:
    exp = compose_experiment("topology=pair", f"network.loss_pct={loss_pct}")
    with emulated(exp) as emu:
        fwd = _datagram_loss(emu, "h1", "h2", count, rate, 7811)
        rev = _datagram_loss(emu, "h2", "h1", count, rate, 7812)
    return {"loss_pct": loss_pct, "datagrams": count, "fwd_loss_pct": fwd,
            "rev_loss_pct": rev}


def tcp_scenario(bw_mbit: float, delay_ms: float = 0.0, duration_s: float = 5.0) -> dict:
    exp = compose_experiment("topology=pair", f"network.bw_mbit={bw_mbit}",
                             f"network.delay_ms={delay_ms}")
    with emulated(exp) as emu:
        got, mss = measure_tcp(emu, "h1", "h2", duration_s)
    # the cap counts frames, TCP carries payload: judged against the payload rate it allows
    want = goodput_mbit(bw_mbit, mss) if bw_mbit else None
    return {"bw_mbit": bw_mbit, "delay_ms": delay_ms, "tcp_mbit": got, "mss": mss,
            "expected_tcp_mbit": want,
            "error_pct": 100 * (got - want) / want if want else None}


def change_scenario(before_ms: float = 10.0, after_ms: float = 50.0,
                    flow_s: float = 4.0, change_at_s: float = 1.5) -> dict:
    """Change delay during a TCP flow; when does the new delay show, does the flow live?"""
    exp = compose_experiment("topology=pair", f"network.delay_ms={before_ms}")
    with emulated(exp) as emu:
        h1, h2 = emu.nodes["h1"], emu.nodes["h2"]
        iperf_srv = h2.popen(["iperf3", "-s", "-1", "-B", emu.ips["h2"], "-p", "7821"])
        echo = h2.popen(PY + ["echo", "--bind", emu.ips["h2"], "--port", "7822",
                               "--idle-s", "3"],
                        stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(0.3)
            flow = h1.popen(["iperf3", "-c", emu.ips["h2"], "-p", "7821", "-t", str(flow_s),
                             "-b", "20M", "-J"], stdout=subprocess.PIPE, text=True)
            n = int(flow_s * 1000 / 2)
            probe = h1.popen(PY + ["rtt", emu.ips["h2"], "--port", "7822", "--count", str(n),
                                   "--interval-ms", "2", "--timeout-ms", "500"],
                             stdout=subprocess.PIPE, text=True)
            time.sleep(change_at_s)
            t_change = time.monotonic()
            emu.set_link("h1-h2", LinkProps(delay_ms=after_ms))
            t_applied = time.monotonic()
            flow_out, _ = flow.communicate(timeout=flow_s + 30)
            probe_out, _ = probe.communicate(timeout=flow_s + 30)
        finally:
            for p in (iperf_srv, echo):
                p.kill()
                p.wait()
    r = json.loads(probe_out.strip().splitlines()[-1])
    pairs = list(zip(r["sent_at"], r["rtts_ms"], strict=True))
    threshold = 2 * after_ms * 0.95
    after = [(t, rtt) for t, rtt in pairs if t >= t_change]
    first_new = next((t for t, rtt in after if rtt >= threshold), None)
    stale = [t - t_change for t, rtt in after if rtt < threshold and t > t_applied]
    flow_json = json.loads(flow_out) if flow_out.strip() else {}
    return {
        "before_ms": before_ms, "after_ms": after_ms,
        "flow_survived": flow.returncode == 0 and "error" not in flow_json,
        "flow_mbit": flow_json.get("end", {}).get("sum_received", {}).get("bits_per_second",
                                                                           0) / 1e6,
        "apply_ms": (t_applied - t_change) * 1000,
        "new_delay_visible_ms": None if first_new is None else (first_new - t_change) * 1000,
        "old_delay_after_apply": len(stale),
        "rtt_before_median_ms": statistics.median(
            [rtt for t, rtt in pairs if t < t_change] or [float("nan")]),
        "rtt_after_median_ms": statistics.median([rtt for _, rtt in after] or [float("nan")]),
    }


def scale_scenario(n_sensors: int = 14, n_devices: int = 2, n_edges: int = 3,
                   delay_ms: float = 2.0) -> dict:
    exp = compose_experiment("topology=device_edge_cloud", f"topology.n_sensors={n_sensors}",
                             f"topology.n_devices={n_devices}", f"topology.n_edges={n_edges}",
                             f"network.delay_ms={delay_ms}")
    t0 = time.monotonic()
    with emulated(exp) as emu:
        t_up = time.monotonic() - t0
        timings = emu.timings
        # s1 -> d1 -> c1 (device uplink): two hops each way
        r = measure_rtt(emu, "s1", "c1", 50, 5)
    return {"hosts": len(exp.topology.nodes), "links": len(exp.topology.links),
            "up_s": t_up, "emulation_up_s": timings["up_s"],
            "teardown_s": timings["teardown_s"],
            "s1_c1_rtt_median_ms": r["median_ms"], "s1_c1_expected_ms": 4 * delay_ms}


TARGETS = {
    "rtt": "median within 2*delay +/- 0.4 ms, p99 <= 2*delay + 1.5 ms",
    "jitter": "RTT stdev within 25 % of jitter*sqrt(2/3), median within 0.4 ms",
    "loss": "5 +/- 1 % per direction",
    "bw": "TCP within +/- 5 % of the payload rate the cap allows (cap x MSS / 1514)",
    "unlimited": ">= 300 Mbit/s TCP through the delay line",
    "change": "flow survives, new delay visible within 100 ms",
    "scale": "20 hosts up <= 5 s, torn down <= 2 s",
}


def _ms(v: float | None) -> str:
    return "never" if v is None else f"{v:.2f} ms"


def run_all(quick: bool = False) -> list[dict]:
    rows: list[dict] = []
    n = 100 if quick else 400
    for d in (1, 10, 50):
        r = rtt_scenario(d, probes=n)
        ok = abs(r["median_ms"] - 2 * d) <= 0.4 and r["p99_ms"] <= 2 * d + 1.5
        rows.append({"check": f"delay {d} ms", "target": TARGETS["rtt"], "ok": ok,
                     "figure": f"RTT median {r['median_ms']:.2f} p99 {r['p99_ms']:.2f} ms",
                     **r})
    r = rtt_scenario(10, 2, probes=n)
    ok = (abs(r["stdev_ms"] - r["expected_stdev_ms"]) <= 0.25 * r["expected_stdev_ms"]
          and abs(r["median_ms"] - 20) <= 0.4)
    rows.append({"check": "jitter 2 ms on 10 ms", "target": TARGETS["jitter"], "ok": ok,
                 "figure": f"RTT stdev {r['stdev_ms']:.2f} (expected "
                           f"{r['expected_stdev_ms']:.2f}), median {r['median_ms']:.2f} ms",
                 **r})
    r = loss_scenario(5, 3000 if quick else 10_000)
    ok = all(4 <= r[k] <= 6 for k in ("fwd_loss_pct", "rev_loss_pct"))
    rows.append({"check": "loss 5 %", "target": TARGETS["loss"], "ok": ok,
                 "figure": f"fwd {r['fwd_loss_pct']:.2f} % rev {r['rev_loss_pct']:.2f} %", **r})
    for bw in (10, 50, 100):
        r = tcp_scenario(bw, duration_s=3 if quick else 5)
        rows.append({"check": f"bandwidth {bw} Mbit/s", "target": TARGETS["bw"],
                     "ok": abs(r["error_pct"]) <= 5,
                     "figure": f"TCP {r['tcp_mbit']:.1f} Mbit/s of {r['expected_tcp_mbit']:.1f} "
                               f"({r['error_pct']:+.1f} %)", **r})
    r = tcp_scenario(0, delay_ms=0, duration_s=3 if quick else 5)
    rows.append({"check": "no cap, delay line", "target": TARGETS["unlimited"],
                 "ok": r["tcp_mbit"] >= 300, "figure": f"TCP {r['tcp_mbit']:.0f} Mbit/s", **r})
    r = change_scenario()
    ok = r["flow_survived"] and r["new_delay_visible_ms"] is not None \
        and r["new_delay_visible_ms"] <= 100
    rows.append({"check": "delay 10 -> 50 ms under TCP", "target": TARGETS["change"], "ok": ok,
                 "figure": f"visible after {_ms(r['new_delay_visible_ms'])}, "
                           f"flow survived: {r['flow_survived']}", **r})
    r = scale_scenario()
    ok = r["hosts"] == 20 and r["up_s"] <= 5 and r["teardown_s"] <= 2
    rows.append({"check": "device_edge_cloud, 20 hosts", "target": TARGETS["scale"], "ok": ok,
                 "figure": f"up {r['up_s']:.2f} s, down {r['teardown_s']:.2f} s, s1->c1 RTT "
                           f"{r['s1_c1_rtt_median_ms']:.2f} ms (expected "
                           f"{r['s1_c1_expected_ms']:.1f})", **r})
    return rows


