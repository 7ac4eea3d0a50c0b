"""The accuracy a pipeline must reach when nothing degrades: the whole model, in process.

Comparing the pipeline's accuracy with this on the same answered samples and
payloads shows that cutting, serving and forwarding lost nothing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.pipeline.config import PipelineConfig, resolve
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
