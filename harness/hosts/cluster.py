"""The hosts of a Ray cluster, and a Ray cluster made of emulated hosts.

A host is a Ray node offering the custom resource `hx_host`, named by its `hx_host`
label (`ray start --labels=hx_host=NAME`), or else by its address. The coordinator is a
Ray node too (Ray drivers attach to a node of their cluster); it offers no `hx_host`,
so no host agent lands there.

For `hosts=emulated`, `EmulatedCluster` starts the head on the coordinator's LAN
address and one node inside each host's namespace, each with its own temp dir (and so
its own sockets), ports picked free, and the run's `HARNESS_RUN` mark, so that the
run's teardown (`remove_run`) stops exactly these processes: never `ray stop`, which
stops every Ray node of the machine.
"""

from __future__ import annotations

import functools
import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from harness.core.config import ConfigError, fail
from harness.emulation.cgroups import joiner, started_joined
from harness.emulation.inventory import CGROUP_ROOT
from harness.emulation.ledger import Ledger
from harness.emulation.tc import EmulationError
from harness.hosts.emulated import EmulatedLan
from harness.hosts.placer import HostInfo

RESOURCE = "hx_host"
LABEL = "hx_host"
NAMESPACE = "harness"  # the agents' (detached actors are named within it, by run prefix)
OBJECT_STORE_BYTES = 100 * 2**20  # per node: agents pass only small messages
TEMP_ROOT = Path("/tmp")  # a Ray node's temp dir: TEMP_ROOT/<prefix>...ray (inventory)


@dataclass(frozen=True)
class ClusterHost:
    info: HostInfo
    node_id: str


def ray_bin() -> str:
    return str(Path(sys.executable).with_name("ray"))


def hosts_of(nodes: list[dict]) -> list[ClusterHost]:
    """The hosts among `ray.nodes()`: alive, offering `hx_host`; sorted by name."""
    out = []
    for n in nodes:
        res = n.get("Resources") or {}
        if not n.get("Alive") or res.get(RESOURCE, 0) <= 0:
            continue
        name = (n.get("Labels") or {}).get(LABEL) or n["NodeManagerAddress"]
        info = HostInfo(name, float(res.get("CPU", 0)), int(res.get("memory", 0) // 2**20),
                        int(res.get("GPU", 0)), n["NodeManagerAddress"])
        out.append(ClusterHost(info, n["NodeID"]))
    names = [h.info.name for h in out]
    dup = next((x for x in names if names.count(x) > 1), None)
    if dup:
        fail("hosts", dup, f"two Ray nodes are named {dup} (label {LABEL}); names must differ")
    return sorted(out, key=lambda h: h.info.name)


def connect(address: str, node_ip: str | None = None) -> list[ClusterHost]:
    """Attach to the cluster at `address`; its hosts, or a ConfigError (`hosts.address`)."""
    import ray

    reachable(address)
    try:
        ray.init(address=address, _node_ip_address=node_ip, logging_level="ERROR",
                 log_to_driver=False, include_dashboard=False, namespace=NAMESPACE)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        why = f"no Ray cluster there ({first[:200]})"
        raise ConfigError(f"hosts.address={address!r}: {why}") from None
    hosts = hosts_of(ray.nodes())
    if not hosts:
        ray.shutdown()
        fail("hosts.address", address, f"the Ray cluster has no node with the `{RESOURCE}` "
             f"resource (start hosts with --resources='{{\"{RESOURCE}\": 1}}')")
    return hosts


def reachable(address: str, timeout_s: float = 3.0) -> None:
    """A TCP connection to the cluster's GCS at `address` (host:port), or a ConfigError
    now: `ray.init` retries an address where nothing listens for minutes."""
    if address == "auto":
        return  # Ray finds the local cluster's address itself, or fails at once
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or address, int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as e:
        why = getattr(e, "strerror", None) or str(e) or type(e).__name__
        fail("hosts.address", address, f"no Ray cluster there ({why})")


@functools.cache
def probe(address: str) -> tuple[HostInfo, ...]:
    """The hosts of the cluster at `address`, to check a config against before the run
    (connects, lists, leaves); a ConfigError naming `hosts.address` otherwise. Once per
    process: the config is checked before Hydra makes the run's directory and again in
    the run, milliseconds apart."""
    import ray

    try:
        return tuple(h.info for h in connect(address))
    finally:
        if ray.is_initialized():
            ray.shutdown()


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def tracking_cgroup(name: str) -> list[str]:
    """A cgroup that only holds processes (the run's teardown finds its members): in the
    memory hierarchy on cgroup v1, not the cpu one, where a new cgroup's real-time
    budget is 0 and the delay lines under an agent lost their real-time priority."""
    v1 = CGROUP_ROOT / "memory"
    d = (v1 if v1.is_dir() else CGROUP_ROOT) / name
    d.mkdir(exist_ok=True)
    return [str(d / "cgroup.procs")]


class EmulatedCluster:
    """Ray on an `EmulatedLan`: the head in the coordinator's namespace, a node per host."""

    def __init__(self, lan: EmulatedLan, ledger: Ledger) -> None:
        self.lan, self.ledger = lan, ledger
        self.address = ""

    def _start(self, argv: list[str], what: str, cgroup: str) -> None:
        """`ray start` in a cgroup of the run's (`cgroup`): its daemons stay in it, so the
        run's teardown finds them there (Ray's process titles overwrite the environment,
        and with it the run's mark)."""
        # Ray runs its workers at nice 15 by default: the agents' nodes (stages, sensors,
        # delay lines) inherited it and a split pipeline's p50 rose by ~1 ms beyond its LAN
        env = {**self.ledger.env(), "RAY_USAGE_STATS_ENABLED": "0", "RAY_worker_niceness": "0"}
        join = joiner(tracking_cgroup(cgroup))
        p = started_joined(join, lambda: subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=120, preexec_fn=join),
            what)
        if p.returncode != 0:
            tail = (p.stderr.strip() or p.stdout.strip()).splitlines()[-3:]
            raise EmulationError(f"ray start on {what} failed: {' | '.join(tail)}")

    def start(self) -> None:
        coord = self.lan.coordinator
        port = free_port(coord)
        self.address = f"{coord}:{port}"
        common = ["--disable-usage-stats", f"--object-store-memory={OBJECT_STORE_BYTES}",
                  "--include-log-monitor=false"]
        self._start([ray_bin(), "start", "--head", f"--node-ip-address={coord}",
                     f"--port={port}", f"--ray-client-server-port={free_port(coord)}",
                     f"--temp-dir={TEMP_ROOT / f'{self.ledger.prefix}ray'}",
                     "--num-cpus=0", "--include-dashboard=false",
                     "--no-monitor",  # no autoscaling here: its monitor is a Python process less
                     *common], "the coordinator",
                    f"{self.ledger.prefix}ray")

        def join(name: str) -> None:
            h = self.lan.host(name)
            self._start(self.lan.in_host(name, [
                ray_bin(), "start", f"--address={self.address}", f"--node-ip-address={h.address}",
                f"--temp-dir={TEMP_ROOT / f'{self.ledger.prefix}{name}ray'}",
                f"--resources={json.dumps({RESOURCE: 1})}", f"--labels={LABEL}={name}",
                *common]), f"host {name}", f"{self.ledger.prefix}{name}ray")

        names = [h.name for h in self.lan.hosts]
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            errors = [f.exception() for f in [pool.submit(join, n) for n in names]]
        bad = [e for e in errors if e is not None]
        if bad:
            raise EmulationError("; ".join(str(e) for e in bad))

    def wait_hosts(self, n: int, timeout_s: float = 60) -> list[ClusterHost]:
        """The cluster's hosts once all `n` are alive (the driver must be connected)."""
        import ray

        end = time.monotonic() + timeout_s
        while True:
            hosts = hosts_of(ray.nodes())
            if len(hosts) >= n:
                return hosts
            if time.monotonic() > end:
                raise EmulationError(f"{len(hosts)} of {n} emulated hosts joined Ray "
                                     f"in {timeout_s:g} s")
            time.sleep(0.2)
