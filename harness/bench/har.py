"""The bench's multi-modal section: `workload=har` (an accelerometer and a gyroscope, an
encoder each, a fusion stage) under faults on one modality, sensing redundancy against
the baseline, with what each mix of modalities is worth.

The figures to read a run's accuracy against are the fusion model's own, in process on
the whole test split with the same axis dropout (each run's `reference_join`): both
modalities, each alone. A run's `agreement` says its answers were exactly the model's
for the modalities that arrived (below 1 only where a fault altered what a sensor sent:
noise, a stuck reading).
"""

from __future__ import annotations

from harness.bench.pipeline import run_harness, valid
from harness.report.stats import median

HAR = ["topology=device_edge_cloud", "workload=har", "pipeline=har"]
BOTH, ACC, GYRO = "emb_acc+emb_gyro", "emb_acc", "emb_gyro"
# fault label -> its overrides: every fault hits one modality, s1 the accelerometer and s2
# the gyroscope (link s2-d1 is the gyroscope's)
FAULTS = {
    "none": ["faults=none"],
    "gyro crash": ["faults=sensor_crash"],
    "acc crash": ["faults=sensor_crash", "faults.actions.0.target=s1"],
    "gyro link down": ["faults=sensor_link_down"],
    "gyro noisy": ["faults=sensor_noise"],
    "gyro stuck": ["faults=sensor_noise", "+faults.actions.0.stuck=true"],
}
MATRIX = [
    ("sensing_redundancy", ["technique=sensing_redundancy"], list(FAULTS)),
    ("baseline", ["technique=baseline"], ["none", "gyro crash", "gyro link down"]),
]
HAR_COLS = ["technique", "faults", "valid", "availability", "availability_after_fault",
            "p50_ms", "accuracy", "accuracy_after_fault", "acc_gyro", "acc_only", "gyro_only",
            "agreement"]


def har_rows(duration_s: float, seeds: int, progress=None) -> tuple[list[dict], dict]:
    """Medians over seeds per technique x fault; and the in-process figures."""
    rows, reference = [], {}
    for label, overrides, faults in MATRIX:
        for fault in faults:
            runs = []
            for seed in range(1, seeds + 1):
                runs.append(run_harness([*HAR, *overrides, *FAULTS[fault],
                                         f"run.duration_s={duration_s}", f"seed={seed}"]))
                if progress is not None:
                    progress(f"har {label} {fault} seed {seed}")
            good = valid(runs)
            reference = reference or next(
                ((r.get("reference_join") or {}).get("by_joined", {}) for r in good), {})

            def by(mix: str, rs: list[dict] = good) -> float | None:
                return median([(r.get("accuracy_by_joined") or {}).get(mix, {}).get("accuracy")
                                for r in rs])

            rows.append({
                "technique": label, "faults": fault, "seeds": seeds,
                "valid": len(good),
                **{k: median([r.get(k) for r in good])
                   for k in ("availability", "availability_after_fault", "accuracy",
                             "accuracy_after_fault")},
                "p50_ms": median([r["latency_ms"]["p50"] for r in good]),
                "acc_gyro": by(BOTH), "acc_only": by(ACC), "gyro_only": by(GYRO),
                "agreement": median([(r.get("reference_join") or {}).get("agreement")
                                      for r in good]),
                "run_dirs": [r["run_dir"] or "" for r in runs]})
    return rows, reference


def har_md(rows: list[dict], reference: dict) -> str:
    from harness.bench.markdown import _fmt

    lines = [f"## Multi-modal sensing: har (accelerometer s1, gyroscope s2), median over "
             f"{rows[0]['seeds']} seed(s)", "",
             "In process on the whole test split, the same axis dropout: both modalities "
             f"{_fmt(reference.get(BOTH))}, accelerometer alone {_fmt(reference.get(ACC))}, "
             f"gyroscope alone {_fmt(reference.get(GYRO))}. `acc_gyro`, `acc_only`, "
             "`gyro_only`: a run's accuracy on the windows answered with both or one; "
             "`agreement`: answers equal to the model's in process for what arrived (a noisy "
             "or stuck sensor sends other data, so less there).", "",
             "| " + " | ".join(HAR_COLS) + " |", "|" + "---|" * len(HAR_COLS)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r[c]) for c in HAR_COLS) + " |")
    return "\n".join(lines) + "\n"
