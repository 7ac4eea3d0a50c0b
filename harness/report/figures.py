"""The report's figures (seaborn), each saved as a PNG under `figures/`.

Only VALID runs are drawn. Every function returns the file it wrote, or None when the
runs give it nothing to show (e.g. no run had a fault), and says in its caption what
the figure shows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from harness.report.collect import requests_of

BIN_S = 0.25  # timeline bins
WINDOW = (-2.0, 6.0)  # seconds around the fault


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    return plt, sns


def _save(fig, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    tmp.replace(out)
    return out


def latency_ecdf(runs: pd.DataFrame, out_dir: Path) -> tuple[Path, str] | None:
    frames = []
    for r in runs.itertuples(index=False):
        req = requests_of(r.run_dir)
        if len(req):
            ans = req[req["latency_ms"].notna()]
            frames.append(pd.DataFrame({"latency_ms": ans["latency_ms"],
                                        "technique": r.technique, "faults": r.faults,
                                        "backend": r.backend}))
    if not frames:
        return None
    plt, sns = _plt()
    df = pd.concat(frames, ignore_index=True)
    several = df["backend"].nunique() > 1
    g = sns.displot(df, x="latency_ms", hue="technique", col="faults",
                    row="backend" if several else None, kind="ecdf", log_scale=True,
                    height=3, aspect=1.2, facet_kws={"sharex": True})
    g.set_axis_labels("latency of answered requests (ms, log)", "share of requests")
    return (_save(g.figure, out_dir / "latency_ecdf.png"),
            "Latency ECDF of answered requests per technique, one panel per fault schedule"
            + (" and backend" if several else "") + "; all seeds pooled.")


def timeline(runs: pd.DataFrame, out_dir: Path) -> list[tuple[Path, str]]:
    """Per fault schedule: share of requests ok within the SLO and accuracy in short bins
    around the fault, a line per technique, a band across seeds (95 % CI of the mean);
    the fault at 0, each technique's median detection and recovery as dashes."""
    out = []
    faulted = runs[runs["fault_at_s"].notna()]
    for faults, grp in faulted.groupby("faults"):
        frames = []
        for r in grp.itertuples(index=False):
            req = requests_of(r.run_dir)
            if not len(req):
                continue
            t = req["scheduled_s"] - r.fault_at_s
            keep = (t >= WINDOW[0]) & (t < WINDOW[1])
            b = (np.floor(t[keep] / BIN_S) * BIN_S).round(3)
            sub = req[keep].assign(t=b, ok=(req["status"] == "ok")[keep].astype(float))
            agg = sub.groupby("t").agg(ok=("ok", "mean"), accuracy=("correct", "mean"))
            frames.append(agg.reset_index().assign(technique=r.technique, seed=r.seed,
                                                   backend=r.backend))
        if not frames:
            continue
        plt, sns = _plt()
        df = pd.concat(frames, ignore_index=True)
        df["accuracy"] = pd.to_numeric(df["accuracy"], errors="coerce")
        fig, axes = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
        for ax, metric, label in ((axes[0], "ok", "share ok within SLO"),
                                  (axes[1], "accuracy", "accuracy of answered")):
            sns.lineplot(df, x="t", y=metric, hue="technique", errorbar=("ci", 95),
                         ax=ax, legend=ax is axes[0])
            ax.axvline(0, color="black", lw=1)
            ax.set_ylabel(label)
            palette = dict(zip(df["technique"].unique(), sns.color_palette(), strict=False))
            for tech, tg in grp.groupby("technique"):
                for col, style in (("mttd_ms", ":"), ("mttr_ms", "--")):
                    v = pd.to_numeric(tg[col], errors="coerce").median()
                    if pd.notna(v):
                        ax.axvline(v / 1000, ls=style, lw=0.8, color=palette.get(tech, "grey"))
        axes[1].set_xlabel(f"seconds from the fault (bins of {BIN_S:.2f} s)")
        if axes[0].get_legend():
            sns.move_legend(axes[0], "upper left", bbox_to_anchor=(1, 1))
        fig.suptitle(f"faults={faults}: fault at 0, median detection (dotted) and "
                     "recovery (dashed) per technique")
        name = f"timeline_{faults}.png"
        out.append((_save(fig, out_dir / name),
                    f"{faults}: share of requests ok within the SLO and accuracy in "
                    f"{BIN_S} s bins around the fault; lines are means across seeds, bands "
                    "their 95 % CI."))
        plt.close(fig)
    return out


def mttd_mttr(runs: pd.DataFrame, out_dir: Path) -> tuple[Path, str] | None:
    df = runs.melt(id_vars=["technique", "faults", "backend"],
                   value_vars=["mttd_ms", "mttr_ms"], var_name="metric", value_name="ms")
    df = df[pd.to_numeric(df["ms"], errors="coerce").notna()]
    if not len(df):
        return None
    df["ms"] = df["ms"].astype(float)
    plt, sns = _plt()
    g = sns.catplot(df, x="ms", y="technique", hue="faults", col="metric", kind="point",
                    estimator="median", errorbar=("ci", 95), linestyle="none",
                    dodge=0.4 if df["faults"].nunique() > 1 else False,
                    sharex=False, height=3.2, aspect=1.4,
                    row="backend" if df["backend"].nunique() > 1 else None)
    g.set_axis_labels("ms", "")
    return (_save(g.figure, out_dir / "mttd_mttr.png"),
            "Mean time to detect and to recover per technique: median across seeds with a "
            "95 % bootstrap CI.")


def cost_benefit(runs: pd.DataFrame, out_dir: Path) -> tuple[Path, str] | None:
    """Stage CPU and bytes on the links relative to the baseline without faults (same
    backend and seed: what the technique costs while all is well is its price), against
    availability and accuracy after the fault."""
    baselines = runs[runs["technique"] == "baseline"]
    free = baselines[baselines["faults"] == "none"].drop_duplicates(["backend", "seed"]) \
        .set_index(["backend", "seed"])
    same = baselines.drop_duplicates(["backend", "faults", "seed"]) \
        .set_index(["backend", "faults", "seed"])
    rows = []
    for r in runs[runs["fault_at_s"].notna()].itertuples(index=False):
        if (r.backend, r.seed) in free.index:  # else: the baseline under the same faults
            b = free.loc[(r.backend, r.seed)]
        elif (r.backend, r.faults, r.seed) in same.index:
            b = same.loc[(r.backend, r.faults, r.seed)]
        else:
            continue
        if not b["cpu_s"]:
            continue
        rows.append({"technique": r.technique, "faults": r.faults,
                     "cpu_vs_baseline": r.cpu_s / b["cpu_s"],
                     "bytes_vs_baseline": (r.bytes_sent / b["bytes_sent"])
                     if b["bytes_sent"] else np.nan, "replicas": r.replicas,
                     "availability_after_fault": r.availability_after_fault,
                     "accuracy_after_fault": r.accuracy_after_fault})
    if not rows:
        return None
    df = pd.DataFrame(rows)
    plt, sns = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, y in zip(axes, ("availability_after_fault", "accuracy_after_fault"), strict=True):
        sns.scatterplot(df, x="cpu_vs_baseline", y=y, hue="technique", style="faults",
                        s=60, ax=ax, legend=ax is axes[1])
        ax.axvline(1, color="grey", lw=0.8)
    if axes[1].get_legend():
        sns.move_legend(axes[1], "upper left", bbox_to_anchor=(1, 1))
    fig.suptitle("cost (stage CPU relative to the fault-free baseline of the same seed) "
                 "against benefit after the fault; one point per run")
    out = _save(fig, out_dir / "cost_benefit.png")
    plt.close(fig)
    return (out, "Cost against benefit: stage CPU relative to the fault-free baseline of the "
            "same backend and seed (where a seed has none: the baseline under the same "
            "faults) against availability and accuracy after the fault.")


def scale(rows: list[dict], targets: dict, out_dir: Path) -> tuple[Path, str] | None:
    """Up and down time against nodes + links (the scale bench): each run a point, the
    medians joined, the targets dotted; a straight line through the origin is linear."""
    pts = [{"nodes + links": r["nodes"] + r["links"], "phase": phase, "s": run[key]}
           for r in rows for run in r.get("each", []) for phase, key in (("up", "up_s"),
                                                                       ("down", "down_s"))]
    if not pts:
        return None
    df = pd.DataFrame(pts)
    plt, sns = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.scatterplot(df, x="nodes + links", y="s", hue="phase", alpha=0.4, ax=ax, legend=False)
    sns.lineplot(df, x="nodes + links", y="s", hue="phase", estimator="median",
                 errorbar=None, marker="o", ax=ax)
    for key, label in (("up_s", "up target"), ("down_s", "down target")):
        ax.axhline(targets[key], color="grey", ls=":", lw=1)
        ax.annotate(label, (0, targets[key]), xycoords=("axes fraction", "data"),
                    textcoords="offset points", xytext=(4, 2), fontsize=8, color="grey")
    ax.set_ylim(0, max(targets["up_s"] * 1.1, df["s"].max() * 1.05))
    ax.set_xlim(0, None)
    ax.set_ylabel("seconds")
    ax.set_title("edge_mesh: network up and down against its size")
    out = _save(fig, out_dir / "scale.png")
    plt.close(fig)
    sizes = ", ".join(f"{r['nodes']}" for r in rows)
    return (out, f"Network up and torn down against nodes + links (edge_mesh with {sizes} "
            "nodes; points: runs, line: medians; dotted: the targets for 200 nodes).")
