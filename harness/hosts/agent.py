"""The host agent: a Ray actor pinned to one host, running as root there, through which
the coordinator builds, drives and tears down that host's share of the emulation.

This module runs on the host (inside a Ray worker the host's Ray node started): it
imports nothing of the coordinator's state, and every call answers with plain data.
`clock_offset_ms` shifts the clock the agent reports (tests inject a known offset and
must recover it).
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any


class HostAgent:
    """Made remote with `agent_class()`; one per host and run."""

    def __init__(self, host: str, prefix: str, clock_offset_ms: float = 0.0) -> None:
        self.host, self.prefix = host, prefix
        self.offset_s = clock_offset_ms / 1000

    def now(self) -> float:
        """This host's wall clock (s), as its events are stamped."""
        return time.time() + self.offset_s

    def hello(self) -> dict[str, Any]:
        """Who and where the agent is: the host, its process, its network namespace."""
        return {"host": self.host, "pid": os.getpid(), "uid": os.geteuid(),
                "netns": os.readlink("/proc/self/ns/net"), "hostname": socket.gethostname(),
                "addresses": addresses(), "cpus": os.cpu_count()}


def addresses() -> list[str]:
    """The host's IPv4 addresses but loopback (from its routing view)."""
    import json
    import subprocess

    out = subprocess.run(["ip", "-j", "-4", "addr", "show"], capture_output=True, text=True)
    if out.returncode != 0:
        return []
    return [a["local"] for i in json.loads(out.stdout) for a in i.get("addr_info", [])
            if not a["local"].startswith("127.")]


def agent_class():  # noqa: ANN201 (a Ray actor class)
    """`HostAgent` as a Ray actor (imported lazily: hosts=local needs no Ray)."""
    import ray

    return ray.remote(num_cpus=0)(HostAgent)


def start_agents(hosts: list, prefix: str, offsets_ms: dict[str, float] | None = None
                 ) -> dict[str, Any]:
    """One agent per host (a `ClusterHost`), pinned to its Ray node; host -> handle."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    cls = agent_class()
    agents = {}
    for h in hosts:
        agents[h.info.name] = cls.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(h.node_id, soft=False),
            name=f"{prefix}-{h.info.name}", lifetime=None,
        ).remote(h.info.name, prefix, (offsets_ms or {}).get(h.info.name, 0.0))
    ray.get([a.hello.remote() for a in agents.values()], timeout=60)
    return agents
