"""Smartwatch IMU windows (BasicMotions): one sensor per modality.

Sensor `i` is the device carrying `modalities[i]` (e.g. [acc, gyro]: sensor 0
the accelerometer, sensor 1 the gyroscope), feeding the model input of the same
name (models/har: acc_encoder takes "acc", gyro_encoder "gyro"), (1, 3, 100)
float32, standardised with the train split. The windows are recorded data, so
`seed` adds nothing; standardised readings are unbounded, so noise is not clipped.
"""

from __future__ import annotations

import numpy as np

from harness.workload.samples import datasets
from harness.workload.samples.base import SampleLibrary


class Har(SampleLibrary):
    name = "har"
    clip = None

    def __init__(self, modalities: list[str] | tuple[str, ...] = ("acc", "gyro")) -> None:
        known = sorted(datasets.HAR_CHANNELS)
        if isinstance(modalities, str) or not modalities \
                or any(m not in datasets.HAR_CHANNELS for m in modalities):
            raise ValueError(f"modalities={modalities!r}: a non-empty list of "
                             f"{', '.join(known)}")
        self.modalities = tuple(modalities)

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
        return {m: datasets.har_window(int(sample_id), m)}
