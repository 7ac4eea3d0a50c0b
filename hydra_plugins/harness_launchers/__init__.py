"""Hydra instantiates only launchers whose class is defined in the `hydra_plugins`
namespace; this is where `conf/hydra/launcher/ray.yaml` finds the harness's Ray
launcher. Its code lives in `harness.sweeps` with the rest of the harness."""

from harness.sweeps.ray_launcher import EmulationRayLauncher as _Launcher


class EmulationRayLauncher(_Launcher):
    """harness.sweeps.ray_launcher.EmulationRayLauncher, under the name Hydra accepts."""
