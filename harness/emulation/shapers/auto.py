"""`shaper=auto`: netem where the kernel has it, else the userspace delay line."""

from __future__ import annotations

from harness.emulation.shapers.base import Shaper
from harness.emulation.shapers.netem import NetemShaper, netem_available
from harness.emulation.shapers.userspace import UserspaceShaper


def auto() -> Shaper:
    ok, _why = netem_available()
    return NetemShaper(check=False) if ok else UserspaceShaper()
