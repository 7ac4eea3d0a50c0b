"""`make bench`: link fidelity, the stage overhead, and the baseline pipeline under faults.

Link scenarios build their own emulated network the way `python -m harness`
would (same configs, same code path), measure it with the independent probes
of `harness.measure.node.probe` and iperf3, and return figures; the tests call the same
scenarios with smaller sample counts and assert the targets. The pipeline
section runs `python -m harness` itself (baseline on device_edge_cloud, with
and without the edge crash). Writes `results/bench/<time>/` (link_fidelity.json,
overhead.json, pipeline.csv, report.md); exits 1 if a target is missed or a run
is INVALID.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from harness.core.config import LinkProps
from harness.core.files import write_json, write_text_atomic
from harness.measure.fidelity import measure_rtt, measure_tcp_mbit
from harness.measure.node.probe import percentile
from harness.run.experiment import compose_experiment
from harness.run.phases import emulated

PY = [sys.executable, "-m", "harness.measure.node.probe"]


def rtt_scenario(delay_ms: float, jitter_ms: float = 0.0, probes: int = 300,
                 interval_ms: float = 5.0) -> dict:
    exp = compose_experiment("topology=pair", f"network.delay_ms={delay_ms}",
                             f"network.jitter_ms={jitter_ms}")
    with emulated(exp) as emu:
        r = measure_rtt(emu, "h1", "h2", probes, interval_ms)
        shaper = emu.shaper.name
    rtts = r["rtts_ms"]
    return {"delay_ms": delay_ms, "jitter_ms": jitter_ms, "shaper": shaper,
            "expected_rtt_ms": 2 * delay_ms, "median_ms": statistics.median(rtts),
            "p99_ms": percentile(rtts, 99), "stdev_ms": statistics.pstdev(rtts),
            "expected_stdev_ms": jitter_ms * (2 / 3) ** 0.5,
            "min_ms": min(rtts), "max_ms": max(rtts), "received": r["received"],
            "sent": r["sent"]}


def _datagram_loss(emu, src: str, dst: str, count: int, rate: float, port: int) -> float:
    sink = emu.nodes[dst].popen(PY + ["sink", "--port", str(port), "--idle-s", "1"],
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
        got = measure_tcp_mbit(emu, "h1", "h2", duration_s)
    return {"bw_mbit": bw_mbit, "delay_ms": delay_ms, "tcp_mbit": got,
            "error_pct": 100 * (got - bw_mbit) / bw_mbit if bw_mbit else None}


def change_scenario(before_ms: float = 10.0, after_ms: float = 50.0,
                    flow_s: float = 4.0, change_at_s: float = 1.5) -> dict:
    """Change delay during a TCP flow; when does the new delay show, does the flow live?"""
    exp = compose_experiment("topology=pair", f"network.delay_ms={before_ms}")
    with emulated(exp) as emu:
        h1, h2 = emu.nodes["h1"], emu.nodes["h2"]
        iperf_srv = h2.popen(["iperf3", "-s", "-1", "-p", "7821"])
        echo = h2.popen(PY + ["echo", "--port", "7822", "--idle-s", "3"],
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
    "bw": "TCP within +/- 5 % of the cap",
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
                     "figure": f"TCP {r['tcp_mbit']:.1f} Mbit/s ({r['error_pct']:+.1f} %)", **r})
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


# technique label -> overrides; each runs under the faults listed with it
MATRIX = [
    ("baseline", ["technique=baseline"], ["none", "edge_crash"]),
    ("failover warm", ["technique=failover"], ["none", "edge_crash"]),
    ("failover active_active", ["technique=failover", "technique.mode=active_active"],
     ["none", "edge_crash"]),
    ("failover cold", ["technique=failover", "technique.mode=cold"], ["edge_crash"]),
    ("failover small variant",
     ["technique=failover", "technique.variant.middle=models/digits/middle_small.onnx"],
     ["edge_crash"]),
    ("structural", ["technique=structural"], ["none", "edge_crash", "edge_crash_recover"]),
    ("structural early exit",
     ["technique=structural", "technique.early_exit=models/digits/exit1.onnx"], ["edge_crash"]),
    ("reconfiguration", ["technique=reconfiguration"], ["none", "edge_crash"]),
    ("sensing_redundancy", ["technique=sensing_redundancy"],
     ["none", "sensor_crash", "sensor_noise"]),
    ("baseline", ["technique=baseline"], ["sensor_crash", "sensor_noise"]),
]
PIPELINE_KEYS = ["availability", "availability_after_fault", "availability_after_recovery",
                 "accuracy", "accuracy_after_fault", "mttd_ms", "mttr_ms", "cpu_s",
                 "bytes_sent", "replicas"]


def run_harness(overrides: list[str], timeout_s: float = 600) -> dict:
    """`python -m harness <overrides>` as a user runs it; its summary.json."""
    from harness.core.paths import REPO as repo
    p = subprocess.run([sys.executable, "-m", "harness", *overrides], cwd=repo,
                       capture_output=True, text=True, timeout=timeout_s)
    lines = p.stdout.strip().splitlines()
    run_dir = Path(lines[-1]) if lines else None  # 0 VALID, 1 INVALID: both have results
    if p.returncode not in (0, 1) or run_dir is None or not (run_dir / "summary.json").exists():
        err = (p.stderr + p.stdout).strip().splitlines()
        raise RuntimeError(f"harness {' '.join(overrides)} failed ({p.returncode}): "
                           f"{err[-1] if err else ''}")
    return json.loads((run_dir / "summary.json").read_text()) | {"run_dir": str(run_dir)}


def _median(values: list) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def pipeline_rows(duration_s: float, seeds: int = 1) -> list[dict]:
    """Every technique under its faults on device_edge_cloud, the same seeds for all:
    medians over seeds, and overheads relative to the baseline without faults."""
    rows = []
    for label, overrides, faults in MATRIX:
        for faults_name in faults:
            runs = [run_harness(["topology=device_edge_cloud", "workload=digits", *overrides,
                                 f"faults={faults_name}", f"run.duration_s={duration_s}",
                                 f"seed={seed}"]) for seed in range(1, seeds + 1)]
            row = {"technique": label, "faults": faults_name, "seeds": seeds,
                   "valid": sum(r["verdict"] == "VALID" for r in runs),
                   "p50_ms": _median([r["latency_ms"]["p50"] for r in runs]),
                   "p99_ms": _median([r["latency_ms"]["p99"] for r in runs]),
                   "run_dirs": [r["run_dir"] for r in runs]}
            for k in PIPELINE_KEYS:
                row[k] = _median([r.get(k) for r in runs])
            rows.append(row)
    base = next(r for r in rows if r["technique"] == "baseline" and r["faults"] == "none")
    for r in rows:
        r["cpu_vs_baseline"] = (r["cpu_s"] / base["cpu_s"]) if r["cpu_s"] and base["cpu_s"] \
            else None
        r["bytes_vs_baseline"] = (r["bytes_sent"] / base["bytes_sent"]) \
            if r["bytes_sent"] and base["bytes_sent"] else None
        r["p50_vs_baseline_ms"] = (r["p50_ms"] - base["p50_ms"]) \
            if r["p50_ms"] is not None else None
    return rows


PIPELINE_COLS = ["technique", "faults", "valid", "availability", "availability_after_fault",
                 "p50_ms", "p99_ms", "accuracy", "accuracy_after_fault", "mttd_ms", "mttr_ms",
                 "replicas", "cpu_vs_baseline", "bytes_vs_baseline", "p50_vs_baseline_ms"]


def report_md(rows: list[dict], shaper: str) -> str:
    lines = [f"# Link fidelity ({datetime.now():%Y-%m-%d %H:%M}, shaper={shaper})", "",
             "| check | measured | target | ok |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['check']} | {r['figure']} | {r['target']} | "
                     f"{'yes' if r['ok'] else '**NO**'} |")
    return "\n".join(lines) + "\n"


def pipeline_md(rows: list[dict]) -> str:
    cols = PIPELINE_COLS
    lines = [f"## Techniques x faults: digits on device_edge_cloud "
             f"(median over {rows[0]['seeds']} seed(s))", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def overhead_md(f: dict) -> str:
    rows = [("(a) in-process session.run", f["inprocess"]), ("(b) client -> stage", f["direct"]),
            ("(c) client -> null stage -> stage", f["via_null"])]
    lines = [f"## Stage overhead ({f['tensor_bytes'] // 1024} KB tensor, n={f['n']}, loopback)",
             "", "| measurement | p50 ms | p99 ms |", "|---|---|---|"]
    lines += [f"| {label} | {p['p50_ms']:.3f} | {p['p99_ms']:.3f} |" for label, p in rows]
    lines += [f"| per-hop overhead (c) - (b) | {f['hop_overhead_p50_ms']:.3f} | "
              f"{f['hop_overhead_p99_ms']:.3f} |",
              f"| stage over in-process (b) - (a) | {f['stage_overhead_p50_ms']:.3f} | |",
              "", f"target: per-hop p50 <= {f['target_hop_ms']} ms: "
                  f"{'yes' if f['ok'] else '**NO**'}"]
    return "\n".join(lines) + "\n"


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer samples, shorter runs")
    ap.add_argument("--only", choices=["link", "overhead", "pipeline"], action="append",
                    help="run only these sections (repeatable; default: all)")
    ap.add_argument("--seeds", type=int, default=1, help="seeds per technique x fault")
    ap.add_argument("--duration-s", type=float, default=12.0, help="length of each pipeline run")
    ap.add_argument("--out", default="results/bench", help="parent folder of the results")
    args = ap.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    sections = args.only or ["link", "overhead", "pipeline"]
    out = Path(args.out) / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out.mkdir(parents=True, exist_ok=True)
    console = Console(width=max(Console().width, 140))
    report, ok = [], True
    # first, on a quiet machine: run right after the link scenarios (which build and
    # tear down many namespaces) it read ~0.3 ms higher (p50 1.02-1.08 vs 0.66-0.78 ms)
    if "overhead" in sections:
        from harness.measure import overhead

        fig = overhead.run(n=200 if args.quick else 1000)
        write_json(out / "overhead.json", fig)
        report.append(overhead_md(fig))
        overhead.print_table(fig)
        ok &= fig["ok"]
    if "link" in sections:
        rows = run_all(args.quick)
        shaper = next((r["shaper"] for r in rows if "shaper" in r), "?")
        write_json(out / "link_fidelity.json", {"shaper": shaper, "rows": rows})
        report.append(report_md(rows, shaper))
        table = Table(title=f"link fidelity (shaper={shaper})")
        for col in ("check", "measured", "target", "ok"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["check"], r["figure"], r["target"],
                          "[green]yes[/]" if r["ok"] else "[red]NO[/]")
        console.print(table)
        ok &= all(r["ok"] for r in rows)
    if "pipeline" in sections:
        rows = pipeline_rows(6 if args.quick else args.duration_s, args.seeds)
        import pandas as pd

        df = pd.DataFrame(rows).drop(columns=["run_dirs"]).assign(
            run_dirs=[";".join(r["run_dirs"]) for r in rows])
        tmp = out / ".pipeline.csv.tmp"
        df.to_csv(tmp, index=False)
        tmp.replace(out / "pipeline.csv")
        report.append(pipeline_md(rows))
        table = Table(title=f"techniques x faults (median of {args.seeds} seed(s))")
        for c in PIPELINE_COLS:
            table.add_column(c.replace("_", " "))
        for r in rows:
            table.add_row(*[_fmt(r[c]) for c in PIPELINE_COLS])
        console.print(table)
        ok &= all(r["valid"] == r["seeds"] for r in rows)
    write_text_atomic(out / "report.md", "\n".join(report))
    print(f"results: {out}/ (report.md and one file per section)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
