"""The bench's sections as markdown tables (report.md)."""

from __future__ import annotations

from datetime import datetime

from harness.report.backend_bench import BACKEND_COLS
from harness.report.pipeline_bench import PIPELINE_COLS


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


def backend_md(rows: list[dict]) -> str:
    cols = BACKEND_COLS
    lines = ["## Backends: device_edge_cloud up and down, stage cold start "
             f"(median of {rows[0]['runs']} runs; a stage's phases over all its stages)", "",
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


