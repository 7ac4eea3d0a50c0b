"""Link shaping that never lies: tc command builders and the two shapers.

Bandwidth is always an htb class on the sending end's egress (changed in
place with `tc class change`, so queues survive). Delay, jitter and loss come
from netem where the kernel has it (`NetemShaper`) or from the harness's own
userspace delay line between the two hosts (`UserspaceShaper`). Every
command's exit status is checked: a property that cannot be applied fails
the run (Mininet's TCLink only logs such errors and carries on).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass

from harness.config import ConfigError, LinkProps

UNLIMITED_KBIT = 10_000_000  # htb rate standing for "no cap"
MIN_KBIT = 1  # htb cannot run at 0; a trace outage becomes 1 kbit/s


class EmulationError(RuntimeError):
    """The emulated network could not be built or changed as configured."""


@dataclass
class DirState:
    """What one direction of a link currently does."""

    props: LinkProps  # fully resolved (no None)
    up: bool = True


def rate_arg(bw_mbit: float) -> str:
    kbit = UNLIMITED_KBIT if bw_mbit <= 0 else max(MIN_KBIT, round(bw_mbit * 1000))
    return f"{kbit}kbit"


def htb_cmds(dev: str, state: DirState, netem: bool) -> list[list[str]]:
    """tc commands (without the leading `tc`) installing one direction's shaping on `dev`."""
    rate = rate_arg(state.props.bw_mbit or 0)
    return [
        ["qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb", "default", "1"],
        ["class", "replace", "dev", dev, "parent", "1:", "classid", "1:1",
         "htb", "rate", rate, "ceil", rate],
        leaf_cmd("replace", dev, state, netem),
    ]


def rate_cmd(dev: str, bw_mbit: float) -> list[str]:
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


class Shaper(ABC):
    """Applies delay, jitter, loss and up/down to links."""

    name: str
    netem: bool  # whether htb's leaf is netem

    def setup(self, prefix: str, env: dict[str, str]) -> None:  # noqa: B027
        """Before any link exists."""

    @abstractmethod
    def peer(self, index: int, end: str, other_ns: str) -> tuple[str, str]:
        """(name, namespace) of the veth peer of link `index`'s end `end` ("a" or "b")."""

    def wire_up(self, links: list[tuple[str, str, str, DirState, DirState, int]]) -> None:  # noqa: B027
        """After all host ends exist: (link name, peer a, peer b, fwd, rev, seed)."""

    @abstractmethod
    def apply(self, link: str, direction: str, state: DirState, end_dev: tuple) -> None:
        """Change delay/jitter/loss/up of one direction at run time."""

    def stats(self) -> dict:
        return {}

    def stop(self) -> None:  # noqa: B027
        """Undo setup (the ledger removes anything left)."""


class NetemShaper(Shaper):
    """Kernel netem under the htb class at the sending end."""

    name = "netem"
    netem = True

    def peer(self, index: int, end: str, other_ns: str) -> tuple[str, str]:
        return "", other_ns  # the veth runs straight to the other host

    def apply(self, link: str, direction: str, state: DirState, end_dev: tuple) -> None:
        node, dev = end_dev
        node.run(["tc", *leaf_cmd("change", dev, state, netem=True)])


class DelayLine:
    """Client of `python -m harness.delayline` running in the wire namespace."""

    def __init__(self, netns: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-m", "harness.delayline"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, bufsize=1,
        )
        self.lock = threading.Lock()
        hello = self._read()
        if not hello.get("ready"):
            raise EmulationError(f"delay line did not start: {hello}")

    def _read(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise EmulationError(f"delay line exited (code {self.proc.poll()})")
        return json.loads(line)

    def call(self, **cmd) -> dict:
        assert self.proc.stdin is not None
        with self.lock:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
            reply = self._read()
        if not reply.get("ok"):
            raise EmulationError(f"delay line: {cmd.get('op')} {cmd.get('link', '')}: "
                                 f"{reply.get('error')}")
        return reply

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call(op="quit")
            except (EmulationError, OSError, ValueError):
                pass
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _dl_props(state: DirState) -> dict:
    p = state.props
    return {"delay_ms": p.delay_ms or 0.0, "jitter_ms": p.jitter_ms or 0.0,
            "loss_pct": p.loss_pct or 0.0, "up": state.up}


class UserspaceShaper(Shaper):
    """Each link runs host a <-veth-> wire namespace <-veth-> host b; a delay line bridges."""

    name = "userspace"
    netem = False

    def __init__(self) -> None:
        self.ns = ""
        self.prefix = ""
        self.line: DelayLine | None = None

    def setup(self, prefix: str, env: dict[str, str]) -> None:
        self.prefix = prefix
        self.ns = f"{prefix}-wire"
        run(["ip", "netns", "add", self.ns])
        run(["ip", "-n", self.ns, "link", "set", "lo", "up"])
        self.line = DelayLine(self.ns, env)

    def peer(self, index: int, end: str, other_ns: str) -> tuple[str, str]:
        return f"{self.prefix}{index}{end}", self.ns

    def wire_up(self, links: list[tuple[str, str, str, DirState, DirState, int]]) -> None:
        script = []
        for _, pa, pb, *_rest in links:
            for dev in (pa, pb):
                script.append(f"ethtool -K {dev} tso off gso off gro off tx off >/dev/null")
                script.append(f"ip link set {dev} up")
        run(["ip", "netns", "exec", self.ns, "sh", "-ec", "\n".join(script)])
        assert self.line is not None
        for name, pa, pb, fwd, rev, seed in links:
            self.line.call(op="add", link=name, a=pa, b=pb, seed=seed,
                           fwd=_dl_props(fwd), rev=_dl_props(rev))

    def apply(self, link: str, direction: str, state: DirState, end_dev: tuple) -> None:
        assert self.line is not None
        self.line.call(op="set", link=link, dir=direction, **_dl_props(state))

    def stats(self) -> dict:
        return self.line.call(op="stats")["links"] if self.line else {}

    def stop(self) -> None:
        if self.line:
            self.line.stop()
            self.line = None
        if self.ns:
            subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
            self.ns = ""


def run(argv: list[str], input: str | None = None, timeout: float = 30) -> str:
    """Run a root-namespace command; a failure is an EmulationError naming it."""
    p = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise EmulationError(f"{' '.join(argv)}: {(p.stderr or p.stdout).strip()}")
    return p.stdout


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


def make_shaper(kind: str) -> Shaper:
    """`auto` picks netem when the kernel has it; asking for netem without it is an error."""
    if kind in ("auto", "netem"):
        ok, why = netem_available()
        if ok:
            return NetemShaper()
        if kind == "netem":
            raise ConfigError(f"network.shaper='netem': this kernel has no netem ({why})")
    return UserspaceShaper()
