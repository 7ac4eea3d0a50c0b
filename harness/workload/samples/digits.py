"""Camera frames of handwritten digits: every sensor is a camera on the same scene.

Frames come from `harness.workload.samples.datasets.digits_frame` (the generation the
model card evaluates); sensor `i` is camera `i`, so cameras see the same digit
with independent noise. Input "image", (1, 1, 32, 32) in [0, 1].
"""

from __future__ import annotations

import numpy as np

from harness.workload.samples import datasets
from harness.workload.samples.base import SampleLibrary


class Digits(SampleLibrary):
    name = "digits"
    clip = (0.0, 1.0)  # a camera saturates
    INPUT = "image"

    def __init__(self, occlusion: float = 0.0) -> None:
        """`occlusion`: probability that a 12x12 square of a frame reads 0 (0: the card's)."""
        if isinstance(occlusion, bool) or not isinstance(occlusion, int | float) \
                or not 0 <= occlusion <= 1:
            raise ValueError(f"occlusion={occlusion!r}: must be a number in [0, 1]")
        self.occlusion = float(occlusion)

    def sample_ids(self) -> np.ndarray:
        return np.asarray(datasets.digits_split()[1])

    def label(self, sample_id: int) -> int:
        return datasets.digits_label(sample_id)

    def input_names(self, sensor_index: int) -> tuple[str, ...]:
        return (self.INPUT,)

    def payload(self, sample_id: int, sensor_index: int, seed: int) -> dict[str, np.ndarray]:
        return {self.INPUT: datasets.digits_frame(int(sample_id), sensor_index, seed,
                                                  self.occlusion)}
