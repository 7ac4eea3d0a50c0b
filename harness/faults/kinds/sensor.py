"""A sensor's output gets noisy or stuck on its last frame, and clean again.

Acts through the workload's sensors (`on_sensor` hooks): the fault needs a
workload whose sensor runs on the target node.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.config import check_range
from harness.faults.base import Fault


@dataclass
class NoiseParams:
    noise_sigma: float = 0.5  # extra Gaussian noise on what the sensor sends
    stuck: bool = False  # repeat the last observation instead

    def validate(self, key: str) -> None:
        check_range(f"{key}.noise_sigma", self.noise_sigma, 0, 100)


def _switch(ctx, action, mode: dict | None) -> dict:
    if not ctx.on_sensor:
        raise ValueError(f"{action.action}: no sensor process runs (set a workload)")
    for hook in ctx.on_sensor:
        hook(action.target, mode)
    return mode or {}


class SensorNoise(Fault):
    name = "sensor_noise"
    inverse = "sensor_clean"
    target = "sensor"
    Params = NoiseParams

    def apply(self, ctx, action) -> dict:
        p = action.params
        return _switch(ctx, action, {"noise_sigma": p.noise_sigma, "stuck": p.stuck})


class SensorClean(Fault):
    name = "sensor_clean"
    restores = True
    target = "sensor"

    def apply(self, ctx, action) -> dict:
        return _switch(ctx, action, None)
