"""The sample-library interface and how a `_target_` + kwargs becomes a library.

The schedule, the sensors, the accounting and the in-process reference all go
through this interface, so none of them knows which data set is replayed.
Resolution uses importlib, not Hydra: the sensor builds its library inside an
emulated node, where host-side packages are not imported.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

import numpy as np

from harness.core.config import target_of


class SampleLibrary(ABC):
    """Deterministic sensor data: ids, labels and what sensor `i` observes of a sample.

    Constructors must be cheap (validation builds one for every config) and load
    data lazily. A bad kwarg raises ValueError("<kwarg>=<value>: why").
    """

    name: str = ""
    # saturation range of a sensor reading, applied to injected noise; None: unbounded
    clip: tuple[float, float] | None = None

    @abstractmethod
    def sample_ids(self) -> np.ndarray:
        """The ids sensors replay, sorted: the held-out test split, never seen in training."""

    @abstractmethod
    def label(self, sample_id: int) -> int:
        """The ground-truth class of a sample."""

    @abstractmethod
    def input_names(self, sensor_index: int) -> tuple[str, ...]:
        """The model inputs sensor number `sensor_index` feeds (the keys of its payloads)."""

    @abstractmethod
    def payload(self, sample_id: int, sensor_index: int, seed: int) -> dict[str, np.ndarray]:
        """What sensor `sensor_index` observes of a sample, batched (leading dim 1);
        `seed` drives any synthetic sensor noise, so payloads are reproducible."""

    def labels(self, sample_ids: Iterable[int]) -> dict[int, int]:
        return {int(i): self.label(int(i)) for i in sample_ids}

    def noisy(self, array: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
        """A faulty sensor's reading: extra Gaussian noise, saturating like the sensor."""
        out = array + rng.normal(0, sigma, array.shape)
        if self.clip is not None:
            out = np.clip(out, *self.clip)
        return out.astype(array.dtype)


def build(spec: dict[str, Any]) -> SampleLibrary:
    """A library from its config node (`_target_` + kwargs)."""
    kwargs = dict(spec)
    cls = target_of("samples", kwargs)
    del kwargs["_target_"]
    lib = cls(**kwargs)
    if not isinstance(lib, SampleLibrary):
        raise TypeError(f"{spec['_target_']} is not a SampleLibrary")
    return lib
