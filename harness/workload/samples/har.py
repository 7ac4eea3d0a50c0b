"""Smartwatch IMU windows (BasicMotions): one sensor per modality.

Sensor `i` is the device carrying `modalities[i]` (e.g. [acc, gyro]: sensor 0
the accelerometer, sensor 1 the gyroscope), feeding the model input of the same
name (models/har: acc_encoder takes "acc", gyro_encoder "gyro"), (1, 3, 100)
float32, standardised with the train split. Standardised readings are unbounded,
so injected noise is not clipped.

The recorded windows are too easy: each modality alone classifies 39 of the 40
test windows, so losing one would cost nothing and show nothing. `axis_dropout`
makes the task honest: each axis of each window reads zero with that
probability (a wearable's channel lost to a loose connector or dropped BLE
packets), drawn from (seed, sample, sensor), so a payload is reproducible. At
0.5 each modality alone is right about three times in four and both together
clearly more often (the run's summary carries the in-process figures).
"""

from __future__ import annotations

import numpy as np

from harness.workload.samples import datasets
from harness.workload.samples.base import SampleLibrary


class Har(SampleLibrary):
    name = "har"
    clip = None

    def __init__(self, modalities: list[str] | tuple[str, ...] = ("acc", "gyro"),
                 axis_dropout: float = 0.0) -> None:
        known = sorted(datasets.HAR_CHANNELS)
        if isinstance(modalities, str) or not modalities \
                or any(m not in datasets.HAR_CHANNELS for m in modalities):
            raise ValueError(f"modalities={modalities!r}: a non-empty list of "
                             f"{', '.join(known)}")
        self.modalities = tuple(modalities)
        if isinstance(axis_dropout, bool) or not isinstance(axis_dropout, int | float) \
                or not 0 <= axis_dropout < 1:
            raise ValueError(f"axis_dropout={axis_dropout!r}: a probability in [0, 1)")
        self.axis_dropout = float(axis_dropout)

    def sample_ids(self) -> np.ndarray:
        return np.asarray(datasets.har_split()[1])

    def label(self, sample_id: int) -> int:
        return datasets.har_label(sample_id)

    def modality(self, sensor_index: int) -> str:
        if not 0 <= sensor_index < len(self.modalities):
            raise ValueError(f"sensor_index={sensor_index}: har has {len(self.modalities)} "
                             f"sensors (modalities {', '.join(self.modalities)})")
        return self.modalities[sensor_index]

    def input_names(self, sensor_index: int) -> tuple[str, ...]:
        return (self.modality(sensor_index),)

    def payload(self, sample_id: int, sensor_index: int, seed: int) -> dict[str, np.ndarray]:
        m = self.modality(sensor_index)
        x = datasets.har_window(int(sample_id), m)
        if self.axis_dropout:
            rng = np.random.default_rng([int(seed), int(sample_id), int(sensor_index)])
            x = x * (rng.random((1, x.shape[1], 1)) >= self.axis_dropout).astype(x.dtype)
        return {m: x}
