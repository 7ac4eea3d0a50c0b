"""Kernel netem under the htb class at the sending end (where the kernel has sch_netem)."""

from __future__ import annotations

import subprocess

from harness.core.config import ConfigError
from harness.emulation.shapers.base import Shaper
from harness.emulation.tc import DirState, EmulationError, leaf_cmd, run


class NetemShaper(Shaper):
    """Kernel netem under the htb class at the sending end."""

    name = "netem"
    netem = True

    def __init__(self, check: bool = True) -> None:
        if check:  # asking for netem without it is an error, never a silent downgrade
            ok, why = netem_available()
            if not ok:
                raise ConfigError(f"shaper=netem: this kernel has no netem ({why})")

    def peer(self, index: int, end: str, other_ns: str) -> tuple[str, str]:
        return "", other_ns  # the veth runs straight to the other host

    def apply(self, link: str, direction: str, state: DirState, end_dev: tuple) -> None:
        node, dev = end_dev
        node.net_run(["tc", *leaf_cmd("change", dev, state, netem=True)])

def netem_available() -> tuple[bool, str]:
    """Probe sch_netem in a throwaway namespace (the module may be loadable but absent)."""
    import secrets

    ns = f"hxprobe{secrets.token_hex(3)}"
    try:
        run(["ip", "netns", "add", ns])
        p = subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo",
                            "root", "netem", "delay", "1ms"], capture_output=True, text=True)
        return p.returncode == 0, (p.stderr.strip() or "ok")
    except (EmulationError, OSError) as e:
        return False, str(e)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)

