"""The hosts section: what spreading one experiment over emulated hosts costs.

Each figure side by side with the same thing on one host, same seeds: the digits
pipeline (p50, p99) with d1 and its sensors on h1 and the rest on h2 (against the LAN's
round trip, which one crossing each way must add); warm failover under the edge crash
with its replica on a third host (MTTR, MTTD, availability after the fault); and
edge_mesh (~210 nodes) brought up and down over 1, 2 and 3 hosts (`harness.bench.scale`'s
child, with hosts=emulated: up and down of the emulation itself, the hosts' Ray nodes
apart).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

from harness.bench.scale import run_one

LAN_DELAY_MS = 0.5
SPLIT = ["hosts=emulated", "hosts.n=2", f"hosts.lan_delay_ms={LAN_DELAY_MS}",
         "hosts.place={s1: h1, s2: h1, d1: h1, e1: h2, e2: h2, c1: h2}"]
THIRD = ["hosts=emulated", "hosts.n=3", f"hosts.lan_delay_ms={LAN_DELAY_MS}",
         "hosts.place={s1: h1, s2: h1, d1: h1, e1: h2, e2: h3, c1: h3}"]
SCENARIOS = {  # name -> (overrides of every run, the split's)
    "digits baseline": (["technique=baseline"], SPLIT),
    "warm failover, edge_crash": (["technique=failover", "faults=edge_crash"], THIRD),
}
MESH = (10, 5, 3)  # 210 nodes
HOSTS_COLS = ["scenario", "hosts", "valid", "p50_ms", "p99_ms", "mttr_ms", "mttd_ms",
              "availability_after_fault"]
MESH_COLS = ["hosts", "nodes", "links", "up_s", "down_s"]


def _median(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def pipeline_rows(duration_s: float, seeds: int, run: Callable[[list[str]], dict],
                  progress: Callable[[str], None] = lambda what: None) -> list[dict]:
    """Per scenario, one host and split: medians over `seeds` (seeds interleaved)."""
    out = []
    for name, (common, split) in SCENARIOS.items():
        got: dict[str, list[dict]] = {"1": [], split[1].split("=")[1]: []}
        for seed in range(1, seeds + 1):
            for hosts, extra in (("1", []), (split[1].split("=")[1], split)):
                progress(f"hosts: {name}, {hosts} host(s), seed {seed}")
                got[hosts].append(run(["topology=device_edge_cloud", "workload=digits",
                                       f"run.duration_s={duration_s}", f"seed={seed}",
                                       *common, *extra]))
        for hosts, rows in got.items():
            valid = [r for r in rows if r["verdict"] == "VALID"]
            out.append({"scenario": name, "hosts": int(hosts),
                        "valid": f"{len(valid)}/{len(rows)}",
                        "p50_ms": _median([r["latency_ms"] or {} for r in valid], "p50"),
                        "p99_ms": _median([r["latency_ms"] or {} for r in valid], "p99"),
                        **{k: _median(valid, k) for k in ("mttr_ms", "mttd_ms",
                                                          "availability_after_fault")}})
    return out


def mesh_rows(progress: Callable[[str], None] = lambda what: None) -> list[dict]:
    rows = []
    for n in (1, 2, 3):
        progress(f"hosts: edge_mesh {MESH} over {n} host(s)")
        over = [] if n == 1 else ["hosts=emulated", f"hosts.n={n}"]
        r = run_one(MESH, over, timeout_s=600)
        rows.append({"hosts": n, **{k: r[k] for k in ("nodes", "links", "up_s", "down_s")}})
    return rows


def hosts_md(rows: list[dict], mesh: list[dict]) -> str:
    from harness.bench.markdown import _fmt

    lines = ["## Hosts: one experiment over emulated hosts", "",
             f"LAN {LAN_DELAY_MS} ms one way (a crossing each way adds "
             f"{2 * LAN_DELAY_MS:g} ms to a round trip).", "",
             "| " + " | ".join(HOSTS_COLS) + " |", "|" + "---|" * len(HOSTS_COLS)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in HOSTS_COLS) + " |" for r in rows]
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
        mesh = mesh_rows(status.update)
    write_json(out / "hosts.json", {"pipeline": rows, "mesh": mesh,
                                    "lan_delay_ms": LAN_DELAY_MS})
    report.append(hosts_md(rows, mesh))
    for title, cols, data in (("hosts: one host vs split (medians)", HOSTS_COLS, rows),
                              ("hosts: edge_mesh up/down", MESH_COLS, mesh)):
        table = Table(title=title)
        for c in cols:
            table.add_column(c.replace("_", " "))
        for r in data:
            table.add_row(*[_fmt(r[c]) for c in cols])
        console.print(table)
    return all(r["valid"].split("/")[0] == r["valid"].split("/")[1] for r in rows)
