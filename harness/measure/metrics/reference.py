"""The accuracy a pipeline must reach when nothing degrades: the whole model, in process.

Comparing the pipeline's accuracy with this on the same answered samples and
payloads shows that cutting, serving and forwarding lost nothing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.pipeline.config import PipelineConfig, resolve
from harness.pipeline.plan import PipelinePlan
from harness.pipeline.sessions import load_session
from harness.workload.samples.base import SampleLibrary


def reference_accuracy(lib: SampleLibrary, pipe: PipelineConfig, df: pd.DataFrame,
                       sensors: list[str], noise_seed: int) -> float | None:
    """The whole model, in process, on the same answered samples and payloads: what the
    pipeline's accuracy must equal when nothing degrades. None when the model needs more
    than one sensor's payload (or nothing was answered)."""
    answered = df[df["status"].isin(["ok", "late"])]
    if answered.empty:
        return None
    sess = load_session(resolve(pipe.model_file, "pipeline.model_file"))
    needs = {i.name for i in sess.get_inputs()}
    index = {s: i for i, s in enumerate(sensors)}
    correct = 0
    for sensor, sample, label in zip(answered["sensor"], answered["sample_id"],
                                     answered["label"], strict=True):
        if sensor not in index or set(lib.input_names(index[sensor])) != needs:
            return None
        x = lib.payload(int(sample), index[sensor], noise_seed)
        pred = int(np.argmax(sess.run(None, x)[0]))
        correct += int(pred == label)
    return correct / len(answered)


def join_reference(lib: SampleLibrary, plan: PipelinePlan, df: pd.DataFrame,
                   sensors: list[str], noise_seed: int) -> dict | None:
    """For branches meeting at a last, join stage (each modality's encoder, then fusion):
    the model in process on the whole test split for every set of branches that may
    arrive (`by_joined`: what losing a modality costs, the figures a run's
    `accuracy_by_joined` is read against), and on the answered requests how often the
    pipeline said what the model says for the branches that did arrive (`agreement`:
    1.0 when serving, joining and masking lost nothing). None for other pipelines."""
    from itertools import combinations

    from harness.pipeline.node.runner import Runner

    joins = plan.joins()
    if joins != [len(plan.stages) - 1] or any(s.model is None for s in plan.stages):
        return None
    join = plan.stages[-1]
    model = {s.name: Runner(str(resolve(s.model, "pipeline.stages.model")), None, 1)
             for s in plan.stages}
    branch_of = {}  # sensor index -> the stages its data runs through before the join
    for k in range(len(sensors)):
        i = plan.entry_for(lib.input_names(k))
        chain = []
        while i is not None and i != joins[0]:
            chain.append(plan.stages[i])
            i = plan.next_index(i)
        branch_of[k] = chain

    def parts(sample: int) -> dict[str, np.ndarray]:
        got: dict[str, np.ndarray] = {}
        for k, chain in branch_of.items():
            x = lib.payload(sample, k, noise_seed)
            for st in chain:
                x = model[st.name].run(x)
            got.update({t: v for t, v in x.items() if t in join.inputs})
        return got

    def predict(got: dict[str, np.ndarray], arrived: tuple[str, ...]) -> int:
        feed = {t: got[t] if t in arrived else np.zeros_like(got[t]) for t in join.inputs}
        if join.mask:
            feed[join.mask] = np.array([[float(t in arrived) for t in join.inputs]], np.float32)
        return int(np.argmax(model[join.name].run(feed)[plan.config.output]))

    cache = {int(s): parts(int(s)) for s in lib.sample_ids()}
    subsets = [c for n in range(len(join.inputs), 0, -1)
               for c in combinations(join.inputs, n)] if join.mask else [tuple(join.inputs)]
    by_joined = {"+".join(c): float(np.mean([predict(g, c) == lib.label(s)
                                             for s, g in cache.items()]))
                 for c in subsets}
    answered = df[df["status"].isin(["ok", "late"]) & df["joined"].notna()]
    agree = [predict(cache[int(s)], tuple(str(j).split("+"))) == p
             for s, j, p in zip(answered["sample_id"], answered["joined"],
                                answered["prediction"], strict=True)]
    return {"by_joined": by_joined,
            "agreement": float(np.mean(agree)) if agree else None}
