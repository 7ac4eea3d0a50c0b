"""What a node is given and uses: CPU share, memory limit, CPU time and its process set.

`EmuNode.resources` is one of these. The Mininet backend implements it with
per-node cgroups (`harness.emulation.cgroups.NodeCgroup`); a container backend
implements it with the container's own cgroup (limits via `container.update`).
Faults (throttle, crash, hang) and the pipeline's CPU accounting use only this
interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path


class NodeResources(ABC):
    """The resources of one node; its processes are exactly `pids()`."""

    name: str
    no_freezer: str = "this backend gives its nodes no cgroup2 freezer"  # why freezer() is []

    @abstractmethod
    def set_cpu(self, cores: float) -> None:
        """Limit to `cores` CPUs (0.3 = 30 % of one core); 0 = unlimited."""

    @abstractmethod
    def set_memory(self, mb: int) -> None:
        """Limit memory to `mb` MiB; 0 = unlimited."""

    @abstractmethod
    def cpu_usage_s(self) -> float:
        """CPU seconds used by the node's processes so far (monotonic)."""

    @abstractmethod
    def oom_kills(self) -> int:
        """Processes of the node the kernel's OOM killer has killed so far (monotonic)."""

    @abstractmethod
    def pids(self) -> list[int]:
        """Every process of the node, sorted (the backend's holder process included)."""

    @abstractmethod
    def add(self, pid: int) -> None:
        """Make a running process one of the node's."""

    def preexec(self) -> Callable[[], None] | None:
        """For Popen(preexec_fn=...): what makes a child the node's before it execs.

        None when processes join by how they are started (e.g. `docker exec`
        puts them in the container's cgroup).
        """
        return None

    def freezer(self) -> list[Path]:
        """The cgroup2 directories whose `cgroup.freeze` stops every process of the node at
        once, those started later included (a hang: `harness.emulation.freezer`); empty
        when the node has none (`no_freezer` says why: it hangs by SIGSTOP then)."""
        return []
