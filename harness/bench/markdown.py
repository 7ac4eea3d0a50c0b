"""The bench's sections as markdown tables (report.md)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from harness.bench.backends import BACKEND_COLS
from harness.bench.pipeline import PIPELINE_COLS
from harness.bench.scale import SCALE_COLS


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
    failed = [f"- {r['technique']} under {r['faults']} ({r['backend']}): {r['failed']}"
              for r in rows if r.get("failed")]
    if failed:  # left out of the medians above, never silently
        lines += ["", "Runs left out (INVALID or failed):", "", *failed]
    return "\n".join(lines) + "\n"


def backend_md(rows: list[dict]) -> str:
    cols = BACKEND_COLS
    lines = ["## Backends: device_edge_cloud up and down, stage cold start "
             f"(median of {rows[0]['runs']} runs; a stage's phases over all its stages)", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def scale_md(rows: list[dict], verdict: dict, figure: tuple[Path, str] | None) -> str:
    cols = SCALE_COLS
    lines = [f"## Scale: edge_mesh up and down (median of {rows[0]['runs']} runs, shaper "
             f"{rows[0]['shaper']}; cpu_s: the harness and its children over up and down; "
             "RSS while up)", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r[c]) for c in cols) + " |")
    lines += ["", f"target: {verdict['target']}: {verdict['figure']}: "
                  f"{'yes' if verdict['ok'] else '**NO**'}"]
    if figure:  # the figure sits in figures/ beside bench.md (and the report)
        lines += ["", f"![{figure[1]}](figures/{figure[0].name})"]
    return "\n".join(lines) + "\n"


def overhead_md(f: dict) -> str:
    rows = [("(a) in-process session.run", f["inprocess"]), ("(b) client -> stage", f["direct"]),
            ("(c) client -> null stage -> stage (lean hop)", f["via_null"]),
            ("(d) ... the null stage calling over gRPC", f["via_null_grpc"]),
            ("(e) client -lean-> stage", f["lean_direct"]),
            ("(f) client -lean-> null stage -lean-> stage", f["lean_via_null"])]
    lines = [f"## Stage overhead ({f['tensor_bytes'] // 1024} KB tensor, n={f['n']}, loopback)",
             "", "| measurement | p50 ms | p99 ms |", "|---|---|---|"]
    lines += [f"| {label} | {p['p50_ms']:.3f} | {p['p99_ms']:.3f} |" for label, p in rows]
    lines += [f"| per-hop overhead in a pipeline (f) - (e) | {f['hop_overhead_p50_ms']:.3f} | "
              f"{f['hop_overhead_p99_ms']:.3f} |",
              f"| ... entered over gRPC (c) - (b) | {f['hop_overhead_from_grpc_p50_ms']:.3f} | |",
              f"| ... all over gRPC (d) - (b) | {f['hop_overhead_grpc_p50_ms']:.3f} | |",
              f"| stage over in-process (b) - (a) | {f['stage_overhead_p50_ms']:.3f} | |",
              "", f"target: per-hop p50 <= {f['target_hop_ms']} ms: "
                  f"{'yes' if f['ok'] else '**NO**'}"]
    return "\n".join(lines) + "\n"


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)




def noise_md(noise: dict[str, dict]) -> str:
    """The machine's noise per section; a busy one named first, with why."""
    busy = {k: n for k, n in noise.items() if n["busy"]}
    out = ["## Machine noise", ""]
    if busy:
        out += ["**Measured on a busy machine: the figures of "
                + ", ".join(f"`{k}`" for k in busy if k != "end")
                + (" (and the machine was busy at the end)" if "end" in busy else "")
                + " include a neighbour's load, not only the harness's; rerun on a quiet "
                "machine before publishing them.** "
                + "; ".join(f"{k}: {n['why']}" for k, n in busy.items()), ""]
    else:
        out += ["Quiet before every section and at the end.", ""]
    out += ["| before | wake-up late p50 / p99 / max (ms) | other processes (cores) | "
            "steal % | busy |", "|---|---|---|---|---|"]
    for k, n in noise.items():
        out.append(f"| {k} | {n['wake_late_p50_ms']:.3f} / {n['wake_late_p99_ms']:.3f} / "
                   f"{n['wake_late_max_ms']:.3f} | {n['other_cores']:.2f} | "
                   f"{n['steal_pct']:.1f} | {'yes' if n['busy'] else 'no'} |")
    return "\n".join(out) + "\n"
