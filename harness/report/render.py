"""`python -m harness.report DIR...`: report.md, a self-contained report.html and
figures/*.png for a run, a sweep or a bench directory (several: one report of all).

Tables give each (backend, faults, technique) its median [95 % CI] across seeds, and
each technique's paired difference from the baseline of the same backend, faults and
seeds with the Wilcoxon signed-rank p-value. INVALID and failed runs are listed with
their reasons and left out of the statistics and figures.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import pandas as pd

from harness.core.files import write_text_atomic
from harness.report import figures
from harness.report.collect import GROUP, collect
from harness.report.stats import median_ci, paired_difference

SUMMARY_COLS = [("availability", "availability"),
                ("availability_after_fault", "avail. after fault"),
                ("accuracy_after_fault", "accuracy after fault"), ("p50_ms", "p50 ms"),
                ("p99_ms", "p99 ms"), ("mttd_ms", "MTTD ms"), ("mttr_ms", "MTTR ms"),
                ("harness_cpu_s", "harness CPU s")]
PAIRED_COLS = [("availability_after_fault", "avail. after fault"),
               ("accuracy_after_fault", "accuracy after fault"), ("p50_ms", "p50 ms"),
               ("cpu_s", "stage CPU s")]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def summary_table(valid: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    header = [*GROUP, "seeds", *(label for _, label in SUMMARY_COLS)]
    rows = []
    for key, g in valid.groupby(GROUP, sort=True):
        rows.append([*map(str, key), str(len(g)),
                     *(median_ci(pd.to_numeric(g[c], errors="coerce")).text()
                       for c, _ in SUMMARY_COLS)])
    return header, rows


def paired_table(valid: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    header = [*GROUP, "pairs", *(f"{label}: diff [95 % CI], p" for _, label in PAIRED_COLS)]
    rows = []
    for (backend, faults), g in valid.groupby(["backend", "faults"], sort=True):
        base = g[g["technique"] == "baseline"]
        if not len(base):
            continue
        for tech, t in g[g["technique"] != "baseline"].groupby("technique", sort=True):
            cells, n = [], 0
            for c, _ in PAIRED_COLS:
                p = paired_difference(
                    dict(zip(t["seed"], pd.to_numeric(t[c], errors="coerce"), strict=True)),
                    dict(zip(base["seed"], pd.to_numeric(base[c], errors="coerce"),
                             strict=True)))
                n = max(n, p.n)
                pv = "-" if p.p_value is None else f"{p.p_value:.3g}"
                cells.append(f"{p.difference.text()}, p={pv}")
            rows.append([backend, faults, tech, str(n), *cells])
    return header, rows


def build(dirs: list[Path], out: Path) -> Path:
    runs = collect(dirs)
    out.mkdir(parents=True, exist_ok=True)
    if not len(runs):
        raise ValueError("no runs found")
    valid = runs[runs["valid"]]
    bad = runs[~runs["valid"]]
    figs: list[tuple[Path, str]] = []
    if len(valid):
        fig_dir = out / "figures"
        for make in (figures.latency_ecdf, figures.mttd_mttr, figures.cost_benefit):
            f = make(valid, fig_dir)
            if f:
                figs.append(f)
        figs += figures.timeline(valid, fig_dir)
    prov = next((p for p in runs.get("provenance", pd.Series(dtype=object)) if p), None)
    sh, sr = summary_table(valid) if len(valid) else ([], [])
    ph, pr = paired_table(valid) if len(valid) else ([], [])
    extra = [Path(d) / "bench.md" for d in dirs if (Path(d) / "bench.md").is_file()]
    md = [f"# Report: {', '.join(str(d) for d in dirs)}", "",
          *(f.read_text().replace("\n# ", "\n## ").removeprefix("# ") + "\n" for f in extra),
          f"{len(runs)} runs: {len(valid)} VALID, {len(bad)} INVALID or failed (left out of "
          "the statistics). Medians across seeds with 95 % bootstrap CIs (n=1: no interval); "
          "paired p-values are two-sided Wilcoxon signed-rank, whose smallest possible value "
          "with n pairs is 2/2^n (0.0625 for 5 seeds, 0.031 for 6).", ""]
    together = pd.to_numeric(runs.get("concurrent_jobs", pd.Series(dtype=float))).max()
    if together > 1:
        md += [f"**Up to {together:g} jobs of this sweep ran at once on one host** "
               "(sweep.csv, concurrent_jobs): their latencies and detection times were "
               "measured beside another emulation and may be perturbed.", ""]
    if sr:
        md += ["## Per technique", "", _md_table(sh, sr)]
    if pr:
        md += ["## Against the baseline (same backend, faults and seeds; technique minus "
               "baseline)", "", _md_table(ph, pr)]
    if len(bad):
        md += ["## INVALID or failed runs", "",
               _md_table(["run", *GROUP, "seed", "verdict", "reasons"],
                         [[r.run_dir, r.backend, r.faults, r.technique, str(r.seed),
                           r.verdict, str(r.reasons)] for r in bad.itertuples()])]
    md += ["## Figures", ""]
    md += [f"![{cap}](figures/{p.name})\n\n*{cap}*\n" for p, cap in figs]
    if prov:
        md += ["## Provenance", "", "```json", json.dumps(prov, indent=1), "```", ""]
    write_text_atomic(out / "report.md", "\n".join(md))
    # figures a bench section drew itself (bench.md links them): in the HTML too
    drawn = [(f.parent / m.group(2), m.group(1)) for f in extra
             for m in re.finditer(r"!\[([^\]]*)\]\((figures/[^)]+)\)", f.read_text())
             if (f.parent / m.group(2)).is_file()]
    write_text_atomic(out / "report.html", _html(md, drawn + figs))
    return out / "report.md"


def _html(md: list[str], figs: list[tuple[Path, str]]) -> str:
    """The markdown's text as preformatted blocks, the figures embedded (one file)."""
    body = []
    for block in "\n".join(md).split("\n## "):
        title, _, rest = block.partition("\n")
        rest = rest.split("## Figures")[0]
        body.append(f"<h2>{html.escape(title.lstrip('# '))}</h2><pre>"
                    f"{html.escape(rest.strip())}</pre>")
    for p, cap in figs:
        data = base64.b64encode(p.read_bytes()).decode()
        body.append(f'<figure><img src="data:image/png;base64,{data}" style="max-width:100%">'
                    f"<figcaption>{html.escape(cap)}</figcaption></figure>")
    return ("<!doctype html><meta charset=utf-8><title>harness report</title>"
            "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}"
            "pre{white-space:pre-wrap;font-size:12px}</style>" + "".join(body))


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    from harness.core import access
    from harness.core.config import ConfigError

    ap = argparse.ArgumentParser(prog="python -m harness.report", description=__doc__)
    ap.add_argument("dirs", nargs="+", type=Path, metavar="DIR")
    ap.add_argument("--out", type=Path, help="where to write (default: the only DIR, or "
                                              "results/reports/<first DIR's name>)")
    a = ap.parse_args(argv)
    out = a.out or (a.dirs[0] if len(a.dirs) == 1 else
                    Path("results/reports") / a.dirs[0].name)
    access.use_like(out if out.is_dir() else a.dirs[0])  # as readable as what it reports on
    try:
        print(build(a.dirs, out))
    except (ConfigError, ValueError) as e:
        print(f"report error: {e}", file=sys.stderr)
        return 2
    return 0
