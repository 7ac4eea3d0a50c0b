"""Scale: edge_mesh at growing sizes up to ~210 nodes, up and down against nodes + links,
and what it costs in memory (issue 10: 200 nodes up <= 10 s, down <= 2 s, and time
growing no faster than nodes + links).

Why a child process per run: the harness process's memory is one of the figures, and
the bench's own (rich, pandas, seaborn) is not part of it. Each child composes the
experiment and brings the network up and down through `emulated`, the code path of
`python -m harness`, and prints its timings, the CPU time it and its children used
(load on the machine barely moves it, where it stretches wall time), its own RSS and
the delay lines' (summed: one per 400 links) while the network is up.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time

# (n_edges, devices_per_edge, sensors_per_device): 50, 110 and 210 nodes; the edges'
# full mesh (45 links) is the same at every size
SIZES = [(10, 1, 3), (10, 2, 4), (10, 5, 3)]
TARGETS = {"min_nodes": 200, "up_s": 10.0, "down_s": 2.0, "growth": 2.0}
SETTLE_S = 10.0  # at most: the kernel frees a run's namespaces after teardown (~1 s for 210)
SCALE_COLS = ["nodes", "links", "runs", "up_s", "down_s", "nodes_s", "links_s", "cpu_s",
              "up_ms_per_unit", "rss_harness_mb", "rss_delayline_mb"]


def _rss_mb(pid: int | str, key: str = "VmRSS") -> float | None:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _cpu_s() -> float:
    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF,
                                                 resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def one(n_edges: int, devices: int, sensors: int, *overrides: str) -> dict:
    """Bring edge_mesh of this size up and down in this process; its figures."""
    from harness.run.experiment import compose_experiment
    from harness.run.lifecycle import emulated

    exp = compose_experiment("topology=edge_mesh", f"topology.n_edges={n_edges}",
                             f"topology.devices_per_edge={devices}",
                             f"topology.sensors_per_device={sensors}", *overrides)
    cpu0 = _cpu_s()
    with emulated(exp) as emu:
        lines = getattr(emu.shaper, "lines", [])
        rss = [_rss_mb(line.proc.pid) for line in lines]
        row = {"nodes": len(emu.nodes), "links": len(emu.links), "shaper": emu.shaper.name,
               "rss_harness_mb": _rss_mb("self"), "delay_lines": len(lines),
               "rss_delayline_mb": sum(r for r in rss if r) if lines else None}
    t = emu.timings
    return row | {"nodes_s": t["nodes_s"], "links_s": t["links_s"], "up_s": t["up_s"],
                  "down_s": t["teardown_s"], "cpu_s": _cpu_s() - cpu0,
                  "peak_rss_harness_mb": _rss_mb("self", "VmHWM")}


def netns_alive() -> int | None:
    """Network namespaces the kernel holds (freed ones included until its cleanup work
    has run), from the slab allocator: None where /proc/slabinfo says nothing."""
    try:
        for line in open("/proc/slabinfo"):
            if line.startswith("net_namespace "):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def settle(before: int | None) -> None:
    """Wait until the kernel has freed the last run's namespaces, so that work is not
    charged to the next run: back to `before`, or no longer falling for half a second
    (a neighbour's namespaces may keep the count up)."""
    deadline = time.monotonic() + SETTLE_S
    seen: list[int] = []
    while time.monotonic() < deadline:
        now = netns_alive()
        if now is None or before is None:
            time.sleep(2)
            return
        seen.append(now)
        if now <= before + 5 or (len(seen) > 5 and min(seen[-5:]) >= seen[-6]):
            return
        time.sleep(0.1)


def run_one(size: tuple[int, int, int], overrides: list[str], timeout_s: float = 300) -> dict:
    p = subprocess.run([sys.executable, "-m", "harness.bench.scale",
                        *map(str, size), *overrides],
                       capture_output=True, text=True, timeout=timeout_s)
    lines = p.stdout.strip().splitlines()
    if p.returncode != 0 or not lines:
        err = (p.stderr + p.stdout).strip().splitlines()
        raise RuntimeError(f"edge_mesh {size}: exit {p.returncode}: {err[-1] if err else ''}")
    return json.loads(lines[-1])


def scale_rows(repeats: int = 3, sizes: list[tuple[int, int, int]] = SIZES,
               overrides: list[str] | None = None,
               progress=lambda what: None) -> list[dict]:
    """Medians of `repeats` runs per size (sizes interleaved, so a burst of load on the
    machine lands on several sizes rather than all runs of one)."""
    runs: dict[tuple, list[dict]] = {s: [] for s in sizes}
    for r in range(repeats):
        for s in sizes:
            progress(f"edge_mesh {s} run {r + 1}/{repeats}")
            before = netns_alive()
            runs[s].append(run_one(s, overrides or []))
            settle(before)
    rows = []
    for s in sizes:
        rs = runs[s]
        row: dict = {"size": list(s), "nodes": rs[0]["nodes"], "links": rs[0]["links"],
                     "shaper": rs[0]["shaper"], "runs": len(rs), "each": rs}
        for k in ("up_s", "down_s", "nodes_s", "links_s", "cpu_s", "rss_harness_mb",
                  "peak_rss_harness_mb", "rss_delayline_mb"):
            vals = [x[k] for x in rs if x[k] is not None]
            row[k] = statistics.median(vals) if vals else None
        row["up_ms_per_unit"] = 1000 * row["up_s"] / (row["nodes"] + row["links"])
        rows.append(row)
    return rows


def check(rows: list[dict]) -> dict:
    """The targets: the largest size (>= 200 nodes) up and down in time, and its time per
    node-or-link at most `growth` times the smallest size's (linear: about 1)."""
    big, small = rows[-1], rows[0]
    growth = big["up_ms_per_unit"] / small["up_ms_per_unit"]
    ok = (big["nodes"] >= TARGETS["min_nodes"] and big["up_s"] <= TARGETS["up_s"]
          and big["down_s"] <= TARGETS["down_s"] and growth <= TARGETS["growth"])
    return {"ok": ok, "growth": growth,
            "target": f"{TARGETS['min_nodes']}+ nodes up <= {TARGETS['up_s']:g} s, down <= "
                      f"{TARGETS['down_s']:g} s; time per node+link at most "
                      f"{TARGETS['growth']:g}x the smallest size's",
            "figure": f"{big['nodes']} nodes + {big['links']} links: up {big['up_s']:.2f} s, "
                      f"down {big['down_s']:.2f} s; per node+link {growth:.2f}x the "
                      f"smallest size's"}


if __name__ == "__main__":
    e, d, s, *rest = sys.argv[1:]
    print(json.dumps(one(int(e), int(d), int(s), *rest)), flush=True)
