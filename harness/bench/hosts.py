"""The hosts section: what spreading one experiment over emulated hosts costs.

Each figure side by side with the same thing on one host, same seeds: the digits
pipeline (p50, p99) with d1 and its sensors on h1 and the rest on h2 (against the LAN's
round trip, which one crossing each way must add); warm failover under the edge crash
with its replica on a third host (MTTR, MTTD, availability after the fault); a link
carried between hosts against the same link on one host (the fidelity check's one-way
delay error and TCP throughput through the tunnel, 1450-byte MTU, vs a local veth); and
edge_mesh (~210 nodes) brought up and down over 1, 2 and 3 hosts (`harness.bench.scale`'s
child, with hosts=emulated: up and down of the emulation itself, the hosts' Ray nodes
apart).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path

from harness.bench.scale import run_one

LAN_DELAY_MS = 0.5
SPLIT = ["hosts=emulated", "hosts.n=2", f"hosts.lan_delay_ms={LAN_DELAY_MS}",
         "hosts.place={s1: h1, s2: h1, d1: h1, e1: h2, e2: h2, c1: h2}"]
THIRD = ["hosts=emulated", "hosts.n=3", f"hosts.lan_delay_ms={LAN_DELAY_MS}",
         "hosts.place={s1: h1, s2: h1, d1: h1, e1: h2, e2: h3, c1: h3}"]
# name -> (overrides of every run, the split's, LAN crossings of the request path one
# way: head d1 -> middle e1 -> tail c1 crosses h1 -> h2 in SPLIT, and h2 -> h3 too in THIRD)
SCENARIOS = {
    "digits baseline": (["technique=baseline"], SPLIT, 1),
    "warm failover, edge_crash": (["technique=failover", "faults=edge_crash"], THIRD, 2),
}
# the fidelity check of one link, d1-e1, on one host and carried h1 -> h2; every link
# capped and delayed alike (the check probes the route between the link's ends, which is
# the link itself only while no other path is shorter)
FID_LINK, FID_BW, FID_DELAY = "d1-e1", 50, 5
FIDELITY = ["topology=device_edge_cloud", "workload=digits", "technique=baseline",
            "run.duration_s=1", "fidelity.enabled=true", f"fidelity.links=[{FID_LINK}]",
            f"network.bw_mbit={FID_BW}", f"network.delay_ms={FID_DELAY}"]
FID_COLS = ["hosts", "link", "delay_configured_ms", "delay_measured_ms", "delay_error_ms",
            "tcp_mbit", "tcp_expected_mbit", "mss", "ok"]
MESH = (10, 5, 3)  # 210 nodes
HOSTS_COLS = ["scenario", "hosts", "valid", "p50_ms", "p50_added_ms", "lan_rtt_added_ms",
              "p99_ms", "mttr_ms", "mttd_ms", "availability_after_fault"]
MESH_COLS = ["hosts", "nodes", "links", "up_s", "down_s"]


def _median(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def pipeline_rows(duration_s: float, seeds: int, run: Callable[[list[str]], dict],
                  progress: Callable[[str], None] = lambda what: None) -> list[dict]:
    """Per scenario, one host and split: medians over `seeds` (seeds interleaved)."""
    out = []
    for name, (common, split, crossings) in SCENARIOS.items():
        n_split = split[1].split("=")[1]
        got: dict[str, list[dict]] = {"1": [], n_split: []}
        for seed in range(1, seeds + 1):
            for hosts, extra in (("1", []), (n_split, split)):
                progress(f"hosts: {name}, {hosts} host(s), seed {seed}")
                got[hosts].append(run(["topology=device_edge_cloud", "workload=digits",
                                       f"run.duration_s={duration_s}", f"seed={seed}",
                                       *common, *extra]))
        one = None
        for hosts, rows in got.items():
            valid = [r for r in rows if r["verdict"] == "VALID"]
            p50 = _median([r["latency_ms"] or {} for r in valid], "p50")
            one = p50 if hosts == "1" else one
            out.append({"scenario": name, "hosts": int(hosts),
                        "valid": f"{len(valid)}/{len(rows)}", "p50_ms": p50,
                        "p50_added_ms": None if hosts == "1" or p50 is None or one is None
                        else p50 - one,
                        "lan_rtt_added_ms": 0.0 if hosts == "1"
                        else 2 * LAN_DELAY_MS * crossings,
                        "p99_ms": _median([r["latency_ms"] or {} for r in valid], "p99"),
                        **{k: _median(valid, k) for k in ("mttr_ms", "mttd_ms",
                                                          "availability_after_fault")}})
    return out


def fidelity_rows(run: Callable[[list[str]], dict],
                  progress: Callable[[str], None] = lambda what: None) -> list[dict]:
    """The fidelity check of one link on one host and carried between two."""
    rows = []
    for hosts, extra in ((1, []), (2, SPLIT)):
        progress(f"hosts: fidelity of {FID_LINK} over {hosts} host(s)")
        r = run([*FIDELITY, *extra])
        rows.append(fidelity_row(hosts, r.get("run_dir"), r["verdict_reasons"]))
    return rows


def fidelity_row(hosts: int, run_dir: str | None, why: list[str]) -> dict:
    """One row from a run's fidelity.json; a run without one is a row saying why."""
    path = Path(run_dir) / "fidelity.json" if run_dir else None
    if path is None or not path.exists():
        return {"hosts": hosts, "link": FID_LINK, "ok": False,
                "failed": "; ".join(why) or "no fidelity.json"}
    got = json.loads(path.read_text())["links"][FID_LINK]
    d, bw = got["delay_ms"], got.get("bw_mbit") or {}
    return {"hosts": hosts, "link": FID_LINK, "delay_configured_ms": d["configured"],
            "delay_measured_ms": d["measured"],
            "delay_error_ms": d["measured"] - d["configured"],
            "tcp_mbit": bw.get("measured_tcp"), "tcp_expected_mbit": bw.get("expected_tcp"),
            "mss": bw.get("mss"), "ok": bool(d["ok"] and bw.get("ok"))}


def mesh_rows(progress: Callable[[str], None] = lambda what: None) -> list[dict]:
    rows = []
    for n in (1, 2, 3):
        progress(f"hosts: edge_mesh {MESH} over {n} host(s)")
        over = [] if n == 1 else ["hosts=emulated", f"hosts.n={n}"]
        r = run_one(MESH, over, timeout_s=600)
        rows.append({"hosts": n, **{k: r[k] for k in ("nodes", "links", "up_s", "down_s")}})
    return rows


def hosts_md(rows: list[dict], fid: list[dict], mesh: list[dict]) -> str:
    from harness.bench.markdown import _fmt

    lines = ["## Hosts: one experiment over emulated hosts", "",
             f"LAN {LAN_DELAY_MS} ms one way (a crossing each way adds "
             f"{2 * LAN_DELAY_MS:g} ms to a round trip).", "",
             "| " + " | ".join(HOSTS_COLS) + " |", "|" + "---|" * len(HOSTS_COLS)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in HOSTS_COLS) + " |" for r in rows]
    lines += ["", f"Link {FID_LINK} at {FID_BW} Mbit/s, {FID_DELAY} ms, on one host and carried "
              "between two (configured delay: the LAN's included):", "",
              "| " + " | ".join(FID_COLS) + " |", "|" + "---|" * len(FID_COLS)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in FID_COLS) + " |" for r in fid]
    lines += ["", "edge_mesh up and down (the emulation; the hosts' own start apart):", "",
              "| " + " | ".join(MESH_COLS) + " |", "|" + "---|" * len(MESH_COLS)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in MESH_COLS) + " |" for r in mesh]
    return "\n".join(lines) + "\n"


def section(out, duration_s: float, seeds: int, report: list[str], console) -> bool:
    """The section in `make bench`: hosts.json, its markdown; whether every run was VALID."""
    from rich.table import Table

    from harness.bench.markdown import _fmt
    from harness.bench.pipeline import run_harness
    from harness.core.files import write_json

    with console.status("hosts") as status:
        rows = pipeline_rows(max(duration_s, 6.0), seeds, run_harness, status.update)
        fid = fidelity_rows(run_harness, status.update)
        mesh = mesh_rows(status.update)
    write_json(out / "hosts.json", {"pipeline": rows, "fidelity": fid, "mesh": mesh,
                                    "lan_delay_ms": LAN_DELAY_MS})
    report.append(hosts_md(rows, fid, mesh))
    for title, cols, data in (("hosts: one host vs split (medians)", HOSTS_COLS, rows),
                              ("hosts: a link on one host vs carried", FID_COLS, fid),
                              ("hosts: edge_mesh up/down", MESH_COLS, mesh)):
        table = Table(title=title)
        for c in cols:
            table.add_column(c.replace("_", " "))
        for r in data:
            table.add_row(*[_fmt(r.get(c)) for c in cols])
        console.print(table)
    return (all(r["valid"].split("/")[0] == r["valid"].split("/")[1] for r in rows)
            and all(r["ok"] for r in fid))
