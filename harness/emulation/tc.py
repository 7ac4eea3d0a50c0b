"""Links in the kernel: tc command builders (htb for bandwidth, netem or pfifo under it).

Bandwidth is always an htb class on the sending end's egress, changed in place
with `tc class change` so queues and connections survive. Every command's exit
status is checked by its caller: a property that cannot be applied fails the
run (Mininet's TCLink only logs such errors and carries on).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from harness.core.config import LinkProps

UNLIMITED_KBIT = 10_000_000  # htb rate standing for "no cap"
MIN_KBIT = 1  # htb cannot run at 0: a lower rate, 0 included, becomes 1 kbit/s


class EmulationError(RuntimeError):
    """The emulated network could not be built or changed as configured."""


@dataclass
class DirState:
    """What one direction of a link currently does."""

    props: LinkProps  # fully resolved (no None)
    up: bool = True


def cap_mbit(props: LinkProps) -> float | None:
    """A link's configured cap; None when it has none (config's bw_mbit None or 0)."""
    return props.bw_mbit or None


def rate_arg(bw_mbit: float | None) -> str:
    """htb's rate for a cap of `bw_mbit`; None = no cap. A rate of 0 is a rate (a trace's
    empty window, an outage), not "unlimited": it and anything below MIN_KBIT become
    MIN_KBIT."""
    kbit = UNLIMITED_KBIT if bw_mbit is None else max(MIN_KBIT, round(bw_mbit * 1000))
    return f"{kbit}kbit"


def htb_cmds(dev: str, state: DirState, netem: bool) -> list[list[str]]:
    """tc commands (without the leading `tc`) installing one direction's shaping on `dev`."""
    rate = rate_arg(cap_mbit(state.props))
    return [
        ["qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb", "default", "1"],
        ["class", "replace", "dev", dev, "parent", "1:", "classid", "1:1",
         "htb", "rate", rate, "ceil", rate],
        leaf_cmd("replace", dev, state, netem),
    ]


def rate_cmd(dev: str, bw_mbit: float | None) -> list[str]:
    rate = rate_arg(bw_mbit)
    return ["class", "change", "dev", dev, "parent", "1:", "classid", "1:1",
            "htb", "rate", rate, "ceil", rate]


def leaf_cmd(verb: str, dev: str, state: DirState, netem: bool) -> list[str]:
    """The queue under the htb class: netem (delay/jitter/loss) or a plain pfifo."""
    head = ["qdisc", verb, "dev", dev, "parent", "1:1", "handle", "10:"]
    p = state.props
    if not netem:
        return head + ["pfifo", "limit", str(p.queue_pkts)]
    loss = 100.0 if not state.up else p.loss_pct or 0.0
    cmd = head + ["netem", "limit", str(p.queue_pkts), "delay", f"{p.delay_ms}ms"]
    if p.jitter_ms:
        cmd += [f"{p.jitter_ms}ms"]
    if loss:
        cmd += ["loss", f"{loss}%"]
    return cmd


def tc_batch(cmds: list[list[str]]) -> str:
    return "".join(" ".join(c) + "\n" for c in cmds)


def run(argv: list[str], input: str | None = None, timeout: float = 30) -> str:
    """Run a root-namespace command; a failure is an EmulationError naming it."""
    p = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise EmulationError(f"{' '.join(argv)}: {(p.stderr or p.stdout).strip()}")
    return p.stdout

