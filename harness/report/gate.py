"""`python -m harness.gate BASELINE CURRENT`: did a change make a resilience metric worse?

Both are bench directories (or the committed baseline, `results/baselines/gate/`)
with `runs.csv`: one row per run with its seed. Per (backend, technique, faults,
metric) the gate compares the two sets of seeds: a regression is a median that
moved the wrong way by more than the metric's tolerance (conf/gate.yaml) AND a
one-sided Mann-Whitney U test that says the two sets differ (p < alpha), as asv
requires a factor and significance. Exit 1 on any regression, 0 otherwise, 2 on
bad input. INVALID runs are left out (and listed): the gate judges figures, not
crashes, which `make test` catches.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from harness.core.paths import CONF_DIR

KEY = ["backend", "technique", "faults"]


@dataclass(frozen=True)
class Rule:
    better: str  # higher | lower
    rel: float
    abs: float

    def tolerance(self, base: float) -> float:
        return max(self.rel * abs(base), self.abs)


def load_rules(path: Path = CONF_DIR / "gate.yaml") -> tuple[float, dict[str, Rule]]:
    cfg = OmegaConf.to_container(OmegaConf.load(path))
    rules = {}
    for name, r in cfg["metrics"].items():
        if r.get("better") not in ("higher", "lower"):
            raise ValueError(f"metrics.{name}.better={r.get('better')!r}: higher or lower")
        rules[name] = Rule(r["better"], float(r.get("rel", 0)), float(r.get("abs", 0)))
    return float(cfg["alpha"]), rules


def load_runs(d: Path) -> pd.DataFrame:
    f = Path(d) / "runs.csv"
    if not f.is_file():
        raise ValueError(f"DIR={str(d)!r}: no runs.csv (a bench directory from "
                         "python -m harness.bench, or results/baselines/gate)")
    return pd.read_csv(f)


def compare(base: pd.DataFrame, cur: pd.DataFrame, alpha: float,
            rules: dict[str, Rule]) -> pd.DataFrame:
    """One row per (key, metric) present in both with values: medians, change, tolerance,
    p-value and the decision."""
    from scipy.stats import mannwhitneyu

    base = base[base["verdict"] == "VALID"]
    cur = cur[cur["verdict"] == "VALID"]
    rows = []
    for key, b in base.groupby(KEY):
        c = cur
        for k, v in zip(KEY, key, strict=True):
            c = c[c[k] == v]
        if not len(c):
            continue
        for metric, rule in rules.items():
            if metric not in b or metric not in c:
                continue
            x = pd.to_numeric(b[metric], errors="coerce").dropna()
            y = pd.to_numeric(c[metric], errors="coerce").dropna()
            if len(x) < 2 or len(y) < 2:
                continue
            mb, mc = float(x.median()), float(y.median())
            worse = (mc - mb) if rule.better == "lower" else (mb - mc)
            tol = rule.tolerance(mb)
            if (x.nunique() == 1 and y.nunique() == 1) or worse <= 0:
                p = 1.0 if worse <= 0 else 0.0
            else:
                p = float(mannwhitneyu(y, x, alternative="greater" if rule.better == "lower"
                                       else "less").pvalue)
            rows.append({**dict(zip(KEY, key, strict=True)), "metric": metric,
                         "baseline": mb, "current": mc, "worse_by": worse, "tolerance": tol,
                         "p": p, "n": f"{len(x)}/{len(y)}",
                         "regressed": bool(worse > tol and p < alpha)})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.gate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("baseline", type=Path)
    ap.add_argument("current", type=Path)
    ap.add_argument("--rules", type=Path, default=CONF_DIR / "gate.yaml")
    a = ap.parse_args(argv)
    try:
        alpha, rules = load_rules(a.rules)
        table = compare(load_runs(a.baseline), load_runs(a.current), alpha, rules)
    except (ValueError, KeyError, OSError) as e:
        print(f"gate error: {e}", file=sys.stderr)
        return 2
    if not len(table):
        print("gate error: nothing to compare (no (backend, technique, faults) in both with "
              "2+ VALID seeds)", file=sys.stderr)
        return 2
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"regression gate: {a.current} against {a.baseline} (alpha {alpha})")
    for col in [*KEY, "metric", "baseline", "current", "worse by", "tolerance", "p", "n", ""]:
        t.add_column(col)
    for r in table.itertuples(index=False):
        t.add_row(r.backend, r.technique, r.faults, r.metric, f"{r.baseline:.4g}",
                  f"{r.current:.4g}", f"{r.worse_by:+.4g}", f"{r.tolerance:.4g}",
                  f"{r.p:.3g}", r.n, "[red]REGRESSED[/]" if r.regressed else "ok")
    Console(width=160).print(t)
    bad = table[table["regressed"]]
    for r in bad.itertuples(index=False):
        print(f"regression: {r.technique} under {r.faults} ({r.backend}): {r.metric} "
              f"{r.baseline:.4g} -> {r.current:.4g} (tolerance {r.tolerance:.4g}, "
              f"p={r.p:.3g})")
    return 1 if len(bad) else 0
