"""The hosts of one run, from first contact to teardown: the emulated LAN and its Ray
cluster if `hosts=emulated`, the connection, one agent per host, clock offsets.

`HostSession.stop` runs on every exit path; what it cannot reach (an agent that died)
is the run's prefix's, which `remove_run` and `python -m harness.clean` remove.
"""

from __future__ import annotations

from typing import Any

from harness.emulation.inventory import kinds
from harness.emulation.ledger import Ledger
from harness.hosts import clock
from harness.hosts.agent import start_agents
from harness.hosts.config import HostsConfig


class HostSession:
    def __init__(self, cfg: HostsConfig, ledger: Ledger,
                 clock_offsets_ms: dict[str, float] | None = None) -> None:
        self.cfg, self.ledger = cfg, ledger
        self.offsets_injected = clock_offsets_ms or {}
        self.lan: Any = None
        self.cluster: Any = None
        self.hosts: list = []  # ClusterHost
        self.agents: dict[str, Any] = {}
        self.clock: dict[str, clock.Offset] = {}

    def start(self) -> None:
        from harness.hosts.cluster import EmulatedCluster, connect

        if self.cfg.kind == "emulated":
            from harness.hosts.emulated import EmulatedLan

            self.lan = EmulatedLan(self.cfg, self.ledger)
            self.lan.start()
            self.cluster = EmulatedCluster(self.lan, self.ledger)
            self.cluster.start()
            connect(self.cluster.address, self.lan.coordinator)
            self.hosts = self.cluster.wait_hosts(self.cfg.n)
        else:
            self.hosts = connect(self.cfg.address)
        self.agents = start_agents(self.hosts, self.ledger.prefix, self.offsets_injected)
        self.clock = self.measure_clocks()

    def measure_clocks(self, n: int = 8) -> dict[str, clock.Offset]:
        import ray

        return {name: clock.measure(lambda a=agent: ray.get(a.now.remote(), timeout=10), n=n)
                for name, agent in self.agents.items()}

    def stop(self) -> None:
        import ray

        for agent in self.agents.values():
            try:
                ray.kill(agent)
            except Exception:  # noqa: BLE001 (already gone: its host's teardown covers it)
                pass
        self.agents = {}
        if ray.is_initialized():
            ray.shutdown()
        if self.cluster is not None:  # its processes carry the run's mark
            for kind in kinds():
                if kind.name in ("processes", "temp_dirs"):
                    kind.remove_all(self.ledger.prefix)
            self.cluster = None
        if self.lan is not None:
            self.lan.stop()
            self.lan = None

    def build(self, topo: Any, network: Any, backend: dict, shaper: dict, seed: int,
              host_of: dict[str, str]) -> dict[str, dict]:
        """Every host's share of `topo` (nodes by `host_of`), brought up by its agent,
        all at once; each host's reply (timings, nodes, links)."""
        import ray

        from harness.emulation.share import shares

        address = {h.info.name: h.info.address for h in self.hosts}
        underlay = {name: self.underlay_dev(name) for name in address}
        parts = shares(topo, host_of, address, underlay, self.ledger.prefix,
                       self.cfg.vxlan_port, self.cfg.tunnel_mtu)
        refs = {h: self.agents[h].build.remote(topo, network, backend, shaper, seed, part)
                for h, part in parts.items()}
        return {h: ray.get(r, timeout=300) for h, r in refs.items()}

    def underlay_dev(self, host: str) -> str:
        """The device of `host` on the hosts' network (emulated: lan0)."""
        if self.lan is not None:
            return "lan0"
        raise NotImplementedError("hosts=ray: the device is read from the host (to come)")
