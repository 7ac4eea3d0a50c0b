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


class Heartbeat:
    """Renews every agent's lease each second; an agent that does not answer within the
    lease is dead (its host named in `dead`)."""

    def __init__(self, agents: dict[str, Any], lease_s: float) -> None:
        import threading

        self.agents, self.lease_s = agents, lease_s
        self.dead: set[str] = set()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._beat()
        self.thread.start()

    def _beat(self) -> None:
        import ray

        refs = {h: a.lease.remote(self.lease_s) for h, a in self.agents.items()
                if h not in self.dead}
        for h, r in refs.items():
            try:
                ray.get(r, timeout=self.lease_s)
            except Exception:  # noqa: BLE001 (died, or silent for a whole lease)
                self.dead.add(h)

    def _loop(self) -> None:
        while not self.stopped.wait(1.0):
            self._beat()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=self.lease_s + 5)


def ray_get_all(refs: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    """Each host's answer (host -> Ray reference), waiting at most `timeout` for each."""
    import ray

    return {h: ray.get(r, timeout=timeout) for h, r in refs.items()}


class HostSession:
    def __init__(self, cfg: HostsConfig, ledger: Ledger) -> None:
        self.cfg, self.ledger = cfg, ledger
        self.lan: Any = None
        self.cluster: Any = None
        self.hosts: list = []  # ClusterHost
        self.agents: dict[str, Any] = {}
        self.clock: dict[str, clock.Offset] = {}
        self.heartbeat: Heartbeat | None = None

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
        self.agents = start_agents(self.hosts, self.ledger.prefix, self.cfg.skew_ms or {},
                                   self.cfg.lease_s)
        self.clock = self.measure_clocks()
        ray_get_all({h: a.set_clock.remote(self.clock[h].offset_ms)
                     for h, a in self.agents.items()})
        self.heartbeat = Heartbeat(self.agents, self.cfg.lease_s)
        self.heartbeat.start()

    def measure_clocks(self, n: int = 8) -> dict[str, clock.Offset]:
        import ray

        return {name: clock.measure(lambda a=agent: ray.get(a.now.remote(), timeout=10), n=n)
                for name, agent in self.agents.items()}

    def dead_hosts(self) -> list[str]:
        """Hosts whose agent stopped answering during the run (each makes it INVALID)."""
        return sorted(self.heartbeat.dead) if self.heartbeat else []

    def stop(self) -> None:
        import ray

        if self.heartbeat is not None:
            self.heartbeat.stop()
        for agent in self.agents.values():
            try:
                ray.get(agent.release.remote(), timeout=5)
            except Exception:  # noqa: BLE001 (gone: nothing to release)
                pass
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
              host_of: dict[str, str], stages: list | None = None,
              shared: list[str] | None = None) -> dict[str, dict]:
        """Every host's share of `topo` (nodes by `host_of`), brought up by its agent,
        all at once; each host's reply (timings, nodes, links)."""

        from harness.emulation.share import shares

        if self.lan is not None:  # the unshaped data leg; the LAN's delay in the lines
            address = {h.name: h.data_address for h in self.lan.hosts}
        else:
            address = {h.info.name: h.info.address for h in self.hosts}
        extra = self.carried_delay_ms
        underlay = self.underlays(address)
        parts = shares(topo, host_of, address, underlay, self.ledger.prefix,
                       self.cfg.vxlan_port, self.cfg.tunnel_mtu, extra)
        refs = {h: self.agents[h].build.remote(topo, network, backend, shaper, seed, part,
                                               stages, shared)
                for h, part in parts.items()}
        return ray_get_all(refs, timeout=300)

    @property
    def carried_delay_ms(self) -> float:
        """What a link carried between hosts adds to its own delay, one way: the emulated
        LAN's (added by the sending host's delay line); 0 between real hosts, whose
        network adds what it adds."""
        return self.cfg.lan_delay_ms if self.lan is not None else 0.0

    def underlays(self, address: dict[str, str]) -> dict[str, str]:
        """Each host's device toward the others (its route to the next host's address)."""

        names = sorted(address)
        if len(names) == 1:
            return {names[0]: ""}
        refs = {h: self.agents[h].underlay.remote(address[names[(i + 1) % len(names)]])
                for i, h in enumerate(names)}
        return ray_get_all(refs)
