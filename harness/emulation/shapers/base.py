"""The shaper interface: what applies delay, jitter, loss and up/down to links.

Bandwidth is the network's job (htb, `harness.emulation.tc`); a shaper adds the
rest, in the kernel (netem) or in userspace (the delay line). A shaper is a
plug-in chosen by `_target_` (conf/shaper/); `auto` picks one for this kernel.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from harness.emulation.tc import DirState


class Shaper(ABC):
    """Applies delay, jitter, loss and up/down to links."""

    name: str
    netem: bool  # whether htb's leaf is netem

    def setup(self, prefix: str, env: dict[str, str], host: str = "") -> None:  # noqa: B027
        """Before any link exists; `host` names a host's share (its names differ from
        another host's on the same machine)."""

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

    def processes(self) -> list[int]:
        """Pids of the processes it runs (the summary's footprint counts their cost)."""
        return []

    def stop(self) -> None:  # noqa: B027
        """Undo setup (the ledger removes anything left)."""

