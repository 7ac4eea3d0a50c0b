"""`python -m harness.gate [BASELINE] CURRENT`: did a change make a resilience metric worse?

Both are bench directories with `runs.csv`: one row per run with its seed. `make gate`
runs the baseline commit's code interleaved with the current code, seed by seed, in one
session (`python -m harness.bench --gate --base`), and gives only CURRENT: its `base/`
is the baseline, and the two are compared seed by seed (paired). When the baseline
commit could not run, CURRENT has no `base/` and the gate says so and compares with the
committed figures of another day (`results/baselines/gate/`, unpaired, wider tolerances).

Per (backend, technique, faults, metric): a regression is a median change the wrong way
beyond the metric's tolerance (conf/gate.yaml) AND a one-sided test that says the two
differ (p < alpha): Wilcoxon signed-rank on the paired differences, Mann-Whitney U when
unpaired. Data that disappears is a regression, never a skip: a key with fewer than two
VALID runs, a key that lost more than half its VALID runs, a metric measured in the
baseline and on no current run (detection stopped firing). When paired, a seed where the
baseline had a value and the current run has none counts as infinitely worse.
Exit 1 on any regression, 0 otherwise, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from harness.core.paths import CONF_DIR, RESULTS_DIR

KEY = ["backend", "technique", "faults"]
COMMITTED = RESULTS_DIR / "baselines" / "gate"  # the baseline figures (and, by git, its commit)


@dataclass(frozen=True)
class Rule:
    better: str  # higher | lower
    rel: float
    abs: float

    def tolerance(self, base: float) -> float:
        return max(self.rel * abs(base), self.abs)


def load_rules(path: Path = CONF_DIR / "gate.yaml",
               mode: str = "paired") -> tuple[float, dict[str, Rule]]:
    """alpha and the metrics' rules for `mode`: paired (same session), pooled (paired,
    over every key at once) or committed (another day's figures)."""
    cfg = OmegaConf.to_container(OmegaConf.load(path))
    if mode not in cfg or not isinstance(cfg[mode], dict):
        raise ValueError(f"{path.name}: no '{mode}' section of metric rules")
    rules = {}
    for name, r in cfg[mode].items():
        if r.get("better") not in ("higher", "lower"):
            raise ValueError(f"{mode}.{name}.better={r.get('better')!r}: higher or lower")
        rules[name] = Rule(r["better"], float(r.get("rel", 0)), float(r.get("abs", 0)))
    return float(cfg["alpha"]), rules


def pooled(base: pd.DataFrame, cur: pd.DataFrame, alpha: float,
           rules: dict[str, Rule]) -> pd.DataFrame:
    """One row per metric over the pairs of every key at once: the median ratio
    current / baseline of the same key and seed, against `rel`, with a Wilcoxon test on
    the log ratios. A slower hot path slows every row: 24 pairs see a 10 % change that
    the 6 of one row cannot tell from a busy neighbour."""
    from scipy.stats import wilcoxon

    on = [*KEY, "seed"]
    b = base[base["verdict"] == "VALID"]
    c = cur[cur["verdict"] == "VALID"]
    rows = []
    for metric, rule in rules.items():
        if metric not in b or metric not in c:
            continue
        m = b[on].assign(x=_values(b, metric)).merge(c[on].assign(y=_values(c, metric)),
                                                     on=on)
        m = m[(m["x"] > 0) & (m["y"] > 0)]
        if len(m) < 6:
            continue
        log = (m["y"] / m["x"]).apply(math.log)
        ratio = math.exp(float(log.median()))
        worse = ratio - 1 if rule.better == "lower" else 1 - ratio
        signed = log if rule.better == "lower" else -log
        p = float(wilcoxon(signed[signed != 0], alternative="greater").pvalue) \
            if (signed != 0).any() and worse > 0 else 1.0
        rows.append(_row(("*", "all rows", "*"), f"{metric} ratio", 1.0, ratio, worse,
                         rule.rel, p, f"{len(m)} pairs", bool(worse > rule.rel and p < alpha)))
    return pd.DataFrame(rows)


def load_runs(d: Path) -> pd.DataFrame:
    f = Path(d) / "runs.csv"
    if not f.is_file():
        raise ValueError(f"DIR={str(d)!r}: no runs.csv (a bench directory from "
                         "python -m harness.bench, or results/baselines/gate)")
    return pd.read_csv(f)


def _row(key: tuple, metric: str, b: float, c: float, worse: float, tol: float, p: float,
         n: str, regressed: bool, why: str = "") -> dict:
    return {**dict(zip(KEY, key, strict=True)), "metric": metric, "baseline": b,
            "current": c, "worse_by": worse, "tolerance": tol, "p": p, "n": n,
            "regressed": regressed, "why": why}


def _values(df: pd.DataFrame, metric: str) -> pd.Series:
    if metric not in df:
        return pd.Series([math.nan] * len(df), index=df.index, dtype=float)
    return pd.to_numeric(df[metric], errors="coerce")


def compare(base: pd.DataFrame, cur: pd.DataFrame, alpha: float, rules: dict[str, Rule],
            paired: bool = False) -> pd.DataFrame:
    """One row per (key, metric) of the baseline: medians, change, tolerance, p-value, the
    decision and, for data that went missing, why."""
    rows = []
    for key, b_all in base.groupby(KEY):
        c_all = cur
        for k, v in zip(KEY, key, strict=True):
            c_all = c_all[c_all[k] == v]
        b = b_all[b_all["verdict"] == "VALID"]
        c = c_all[c_all["verdict"] == "VALID"]
        nb, nc = len(b), len(c)
        if nb < 2:  # a gate that cannot judge does not pass
            rows.append(_row(key, "valid_runs", nb, nc, 0, 0, 0.0, f"{nb}/{nc}", True,
                             f"only {nb} of {len(b_all)} baseline runs VALID: cannot judge"))
            continue
        if nc < 2 or nc < nb / 2:
            reasons = sorted(set(c_all["reason"].dropna().astype(str)))[:2] \
                if "reason" in c_all else []
            rows.append(_row(key, "valid_runs", nb, nc, nb - nc, 0, 0.0, f"{nb}/{nc}", True,
                             f"{nc} of {len(c_all)} current runs VALID (baseline {nb} of "
                             f"{len(b_all)})" + (f": {'; '.join(reasons)}" if reasons else "")))
            if nc < 2:
                continue
        for metric, rule in rules.items():
            rows.append((_paired if paired else _unpaired)(key, metric, rule, b, c, alpha))
    return pd.DataFrame([r for r in rows if r is not None])


def _missing(key: tuple, metric: str, x: pd.Series, y: pd.Series) -> dict | None:
    """A metric the baseline measured (2+ runs) and the current code lost on all but
    one run: a regression whatever the test says."""
    if x.notna().sum() >= 2 and y.notna().sum() < 2:
        return _row(key, metric, float(x.median()), math.nan, math.inf, 0, 0.0,
                    f"{x.notna().sum()}/{y.notna().sum()}", True,
                    f"measured on {x.notna().sum()} baseline runs, on {y.notna().sum()} "
                    f"of {len(y)} current runs")
    return None


def _unpaired(key, metric, rule, b, c, alpha) -> dict | None:
    from scipy.stats import mannwhitneyu

    x, y = _values(b, metric), _values(c, metric)
    gone = _missing(key, metric, x, y)
    if gone or x.notna().sum() < 2:
        return gone
    x, y = x.dropna(), y.dropna()
    mb, mc = float(x.median()), float(y.median())
    worse = (mc - mb) if rule.better == "lower" else (mb - mc)
    if (x.nunique() == 1 and y.nunique() == 1) or worse <= 0:
        p = 1.0 if worse <= 0 else 0.0
    else:
        p = float(mannwhitneyu(y, x, alternative="greater" if rule.better == "lower"
                               else "less").pvalue)
    tol = rule.tolerance(mb)
    return _row(key, metric, mb, mc, worse, tol, p, f"{len(x)}/{len(y)}",
                bool(worse > tol and p < alpha))


def _paired(key, metric, rule, b, c, alpha) -> dict | None:
    """Seed by seed: d = how much worse the current run is than the baseline's run of the
    same seed (+inf when only the baseline has a value, -inf when only the current)."""
    from scipy.stats import wilcoxon

    x, y = _values(b, metric), _values(c, metric)
    both = b[["seed"]].assign(x=x).merge(c[["seed"]].assign(y=y), on="seed")
    gone = _missing(key, metric, x, y)
    if gone or both["x"].notna().sum() < 2:
        return gone
    sign = 1.0 if rule.better == "lower" else -1.0
    d = (sign * (both["y"] - both["x"])).where(both["x"].notna() & both["y"].notna())
    d[both["x"].notna() & both["y"].isna()] = math.inf
    d[both["x"].isna() & both["y"].notna()] = -math.inf
    d = d.dropna()
    worse = float(d.median()) if len(d) else 0.0
    finite = d[d.abs() < math.inf]
    big = (finite.abs().max() if len(finite) else 1.0) * 10 + 1
    nonzero = d[d != 0].clip(-big, big)
    if len(nonzero) == 0 or worse <= 0:
        p = 1.0
    else:
        p = float(wilcoxon(nonzero, alternative="greater").pvalue)
    mb = float(both["x"].median())
    tol = rule.tolerance(mb)
    return _row(key, metric, mb, float(both["y"].median()), worse, tol, p,
                f"{len(d)} pairs", bool(worse > tol and p < alpha))


def baseline_of(current: Path) -> tuple[Path, bool, str]:
    """(baseline dir, paired, what was compared) for a gate bench given alone."""
    if (current / "base" / "runs.csv").is_file():
        return current / "base", True, "the baseline commit's runs of this session"
    try:
        why = json.loads((current / "bench.json").read_text()).get("base", {}).get("why_not")
    except (OSError, ValueError):
        why = None
    return COMMITTED, False, ("the committed figures of another day (the baseline commit "
                              f"did not run here: {why or 'no base/ in this bench'})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.gate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", type=Path, nargs="+", metavar="[BASELINE] CURRENT")
    ap.add_argument("--rules", type=Path, default=CONF_DIR / "gate.yaml")
    a = ap.parse_args(argv)
    if len(a.dirs) > 2:
        print(f"gate error: DIRS={' '.join(map(str, a.dirs))!r}: at most BASELINE CURRENT",
              file=sys.stderr)
        return 2
    current = a.dirs[-1]
    if len(a.dirs) == 2:
        baseline = a.dirs[0]
        paired = baseline.resolve() == (current / "base").resolve()
        what = str(baseline)
    else:
        baseline, paired, what = baseline_of(current)
    try:
        alpha, rules = load_rules(a.rules, "paired" if paired else "committed")
        base, cur = load_runs(baseline), load_runs(current)
        table = compare(base, cur, alpha, rules, paired)
        if paired:
            table = pd.concat([table, pooled(base, cur, alpha,
                                             load_rules(a.rules, "pooled")[1])],
                              ignore_index=True)
    except (ValueError, KeyError, OSError) as e:
        print(f"gate error: {e}", file=sys.stderr)
        return 2
    print(f"gate: {current} against {what} ({'paired by seed' if paired else 'unpaired'})")
    if not len(table):
        print("gate error: nothing to compare (the baseline has no (backend, technique, "
              "faults) with runs)", file=sys.stderr)
        return 2
    _print(table, f"regression gate: {current} against {baseline} (alpha {alpha})")
    bad = table[table["regressed"]]
    for r in bad.itertuples(index=False):
        print(f"regression: {r.technique} under {r.faults} ({r.backend}): {r.metric} "
              + (r.why if r.why else
                 f"{r.baseline:.4g} -> {r.current:.4g} (tolerance {r.tolerance:.4g}, "
                 f"p={r.p:.3g})"))
    return 1 if len(bad) else 0


def _print(table: pd.DataFrame, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for col in [*KEY, "metric", "baseline", "current", "worse by", "tolerance", "p", "n", ""]:
        t.add_column(col)
    for r in table.itertuples(index=False):
        t.add_row(r.backend, r.technique, r.faults, r.metric, f"{r.baseline:.4g}",
                  f"{r.current:.4g}", f"{r.worse_by:+.4g}", f"{r.tolerance:.4g}",
                  f"{r.p:.3g}", r.n, "[red]REGRESSED[/]" if r.regressed else "ok")
    Console(width=160).print(t)
