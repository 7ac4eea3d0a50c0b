"""`make bench`: the stage overhead, link fidelity, and every technique under its faults.

Sections: `overhead` (`harness.bench.overhead`), `link` (the scenarios of
`harness.bench.link`, against their targets), `backend` (network up/down
and stage cold start per backend, `harness.bench.backends`), `scale`
(edge_mesh up to ~210 nodes up and down, and memory, `harness.bench.scale`)
`pipeline` (every technique under its faults via `python -m harness`, on each
backend, `harness.bench.pipeline`) and `har` (multi-modal sensing under
faults on one modality, `harness.bench.har`). Writes `results/bench/<time>/`
(link_fidelity.json, overhead.json, backends.json, scale.json, pipeline.csv, har.csv,
report.md); exits 1 if a target is missed or a run is INVALID.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path

from harness.bench.backends import BACKEND_COLS, backend_rows
from harness.bench.link import run_all
from harness.bench.markdown import (
    _fmt,
    backend_md,
    noise_md,
    overhead_md,
    pipeline_md,
    report_md,
    scale_md,
)
from harness.bench.pipeline import (
    FULL,
    GATE_MATRIX,
    MATRIX,
    PIPELINE_COLS,
    matrix_size,
    pipeline_rows,
)
from harness.core.files import write_json, write_text_atomic
from harness.core.provenance import provenance


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer samples, shorter runs")
    ap.add_argument("--full", action="store_true",
                    help="the pipeline section's every variant under every fault it answers "
                         "(27 rows; default: each technique under its main fault, 14 rows)")
    ap.add_argument("--only", choices=["link", "overhead", "backend", "scale", "pipeline",
                                       "har", "hosts"],
                    action="append", help="run only these sections (repeatable; default: all)")
    ap.add_argument("--backend", choices=["mininet", "docker"], action="append",
                    help="backends of the pipeline section (repeatable, rows side by side; "
                         "default: mininet); the backend section always compares both")
    ap.add_argument("--seeds", type=int, default=5, help="seeds per technique x fault")
    ap.add_argument("--duration-s", type=float, default=4.0,
                    help="length of each pipeline run (the fault strikes at a third)")
    ap.add_argument("--gate", action="store_true",
                    help="the gate's bench: the pipeline section on the gate's rows only "
                         "(`make gate`; compare with python -m harness.gate)")
    ap.add_argument("--base", metavar="REF", nargs="?", const="", default=None,
                    help="interleave every pipeline run with the same run of commit REF "
                         "(default: the commit of the committed gate baseline), seed by "
                         "seed on this machine; its runs go to base/runs.csv (`make gate`)")
    ap.add_argument("--out", default="results/bench", help="parent folder of the results")
    ap.add_argument("overrides", nargs="*",
                    help="Hydra overrides applied to every pipeline run (e.g. "
                         "technique.health_period_ms=250 to see the gate catch it)")
    args = ap.parse_args(argv)
    bad = [o for o in args.overrides if "=" not in o]
    if bad or args.seeds < 1 or args.duration_s <= 0:
        what = (f"overrides={bad[0]!r}: must be key=value" if bad else
                f"--seeds={args.seeds}: must be >= 1" if args.seeds < 1 else
                f"--duration-s={args.duration_s}: must be > 0")
        print(f"bench error: {what}", file=sys.stderr)
        return 2
    from rich.console import Console
    from rich.table import Table

    sections = args.only or (["pipeline"] if args.gate else
                             ["link", "overhead", "backend", "scale", "pipeline", "hosts",
                              "har"])
    backends = tuple(args.backend or ["mininet"])
    # the pid too: two benches started in the same second must not share a directory
    out = Path(args.out) / f"{datetime.now().strftime('%Y-%m-%d_%H-%M-%S')}_{os.getpid()}"
    out.mkdir(parents=True)
    console = Console(width=max(Console().width, 140))
    report, ok = [], True
    noise: dict[str, dict] = {}  # section -> the machine's noise just before it
    # first, on a quiet machine: run right after the link scenarios (which build and
    # tear down many namespaces) it read ~0.3 ms higher (p50 1.02-1.08 vs 0.66-0.78 ms)
    if "overhead" in sections:
        noise["overhead"] = _quiet_enough("overhead", console)
        from harness.bench import overhead

        fig = overhead.run(n=200 if args.quick else 1000)
        write_json(out / "overhead.json", fig)
        report.append(overhead_md(fig))
        overhead.print_table(fig)
        ok &= fig["ok"]
    if "link" in sections:
        noise["link"] = _quiet_enough("link", console)
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
    if "backend" in sections:
        noise["backend"] = _quiet_enough("backend", console)
        rows = backend_rows(["mininet", "docker"], repeats=2 if args.quick else 3)
        write_json(out / "backends.json", rows)
        report.append(backend_md(rows))
        table = Table(title="backends: network up/down, stage cold start (medians)")
        for c in BACKEND_COLS:
            table.add_column(c.replace("_", " "))
        for r in rows:
            table.add_row(*[_fmt(r[c]) if c != "ok" else
                            ("[green]yes[/]" if r["ok"] else "[red]NO[/]") for c in BACKEND_COLS])
        console.print(table)
        ok &= all(r["ok"] for r in rows)
    if "scale" in sections:
        noise["scale"] = _quiet_enough("scale", console)
        md, good = _scale(out, args.quick, console)
        report.append(md)
        ok &= good
    if "pipeline" in sections:
        noise["pipeline"] = _quiet_enough("pipeline", console)
        import pandas as pd
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        matrix = GATE_MATRIX if args.gate else FULL if args.full else MATRIX
        seeds = 2 if args.quick else args.seeds
        settings = {"duration_s": args.duration_s, "seeds": seeds, "backends": list(backends),
                    "gate": args.gate, "overrides": args.overrides, "provenance": provenance()}
        tree = None
        if args.base is not None:
            from harness.bench.base import prepare

            sha, tree, why = prepare(args.base or None)
            settings["base"] = {"commit": sha, "ran": tree is not None, "why_not": why}
            if tree is None:
                console.print(f"[yellow]baseline commit {sha[:12]} cannot run here ({why}): "
                              "only the current code runs; the gate falls back to the "
                              "committed figures[/]")
            else:
                (out / "base").mkdir()
                write_json(out / "base" / "bench.json", {**settings, "side": "base",
                                                         "commit": sha})
        write_json(out / "bench.json", settings)
        per_run: dict[str, list[dict]] = {"current": [], "base": []}

        def sink(row: dict) -> None:  # every run on disk as soon as it ends
            side = row.pop("side")
            per_run[side].append(row)
            write_text_atomic((out if side == "current" else out / "base") / "runs.csv",
                              pd.DataFrame(per_run[side]).to_csv(index=False))

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                      console=console) as bar:
            total = matrix_size(matrix, seeds, backends) * (2 if tree is not None else 1)
            task = bar.add_task("pipeline runs", total=total)
            rows = pipeline_rows(args.duration_s, seeds, backends, matrix, args.overrides,
                                 lambda what: bar.update(task, advance=1, description=what),
                                 sink, tree)
        df = pd.DataFrame(rows).drop(columns=["run_dirs"]).assign(
            run_dirs=[";".join(r["run_dirs"]) for r in rows])
        tmp = out / ".pipeline.csv.tmp"
        df.to_csv(tmp, index=False)
        tmp.replace(out / "pipeline.csv")
        report.append(pipeline_md(rows))
        table = Table(title=f"techniques x faults (median of {seeds} seed(s), "
                            f"{args.duration_s:g} s runs)")
        for c in PIPELINE_COLS:
            table.add_column(c.replace("_", " "))
        for r in rows:
            table.add_row(*[_fmt(r[c]) for c in PIPELINE_COLS])
        console.print(table)
        for r in rows:
            if r["failed"]:
                console.print(f"[red]left out[/] {r['technique']} under {r['faults']} "
                              f"({r['backend']}): {r['failed']}")
        ok &= all(r["valid"] == r["seeds"] for r in rows)
    if "hosts" in sections:
        noise["hosts"] = _quiet_enough("hosts", console)
        from harness.bench.hosts import section

        # 2 seeds: the split's offset from one host is the figure (1-2 ms against a p50
        # of 3-7), steady between seeds; 3 took make bench ~1 min closer to its 20
        ok &= section(out, args.duration_s, 1 if args.quick else min(args.seeds, 2), report,
                      console)
    if "har" in sections:
        noise["har"] = _quiet_enough("har", console)
        ok &= _har(out, max(args.duration_s, 6.0), 1 if args.quick else min(args.seeds, 3),
                   report, console)
    noise["end"] = _quiet_enough("end", console)
    write_json(out / "noise.json", noise)
    report.insert(0, noise_md(noise))
    write_text_atomic(out / "bench.md", "\n".join(report))
    if "pipeline" in sections:
        from harness.report.render import build

        build([out], out)
    print(f"results: {out}/ (report.md, report.html, figures/ and one file per section)")
    print(out, flush=True)  # machine-readable: the bench's dir is the last line
    return 0 if ok else 1


def _har(out: Path, duration_s: float, seeds: int, report: list[str], console) -> bool:
    """The multi-modal section: har.csv, its markdown; whether every run was VALID and
    sensing redundancy kept every window answered under each single-modality fault."""
    import pandas as pd
    from rich.table import Table

    from harness.bench.har import HAR_COLS, har_md, har_rows

    rows, reference = har_rows(duration_s, seeds, lambda what: console.print(what))
    write_text_atomic(out / "har.csv", pd.DataFrame(rows).assign(
        run_dirs=[";".join(r["run_dirs"]) for r in rows]).to_csv(index=False))
    report.append(har_md(rows, reference))
    table = Table(title="har: one modality faulty (accuracy in process: "
                        + ", ".join(f"{k} {v:.3f}" for k, v in reference.items()) + ")")
    for c in HAR_COLS:
        table.add_column(c.replace("_", " "))
    for r in rows:
        table.add_row(*[_fmt(r[c]) for c in HAR_COLS])
    console.print(table)
    return all(r["valid"] == r["seeds"] for r in rows) and all(
        (r["availability_after_fault"] or 0) >= 0.99 for r in rows
        if r["technique"] == "sensing_redundancy" and r["faults"] != "none")


def _quiet_enough(section: str, console) -> dict:
    """The machine's scheduling noise right now; said aloud when it is too busy for the
    section's tight figures to be the harness's own."""
    from harness.bench.noise import measure

    n = measure().to_dict()
    if n["busy"]:
        console.print(f"[yellow]machine busy before {section}: {n['why']}[/]")
    return n


def _scale(out: Path, quick: bool, console) -> tuple[str, bool]:
    """The scale section: its markdown and whether it met its targets."""
    from rich.table import Table

    from harness.bench.scale import SCALE_COLS, TARGETS, check, scale_rows
    from harness.report.figures import scale

    with console.status("scale") as status:
        rows = scale_rows(repeats=1 if quick else 3, progress=status.update)
    verdict = check(rows)
    write_json(out / "scale.json", {"rows": rows, **verdict})
    fig = scale(rows, TARGETS, out / "figures")
    table = Table(title=f"scale: edge_mesh up/down (medians); {verdict['figure']}")
    for c in SCALE_COLS:
        table.add_column(c.replace("_", " "))
    for r in rows:
        table.add_row(*[_fmt(r[c]) for c in SCALE_COLS])
    console.print(table)
    return scale_md(rows, verdict, fig), verdict["ok"]


if __name__ == "__main__":
    sys.exit(main())
