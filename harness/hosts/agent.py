"""The host agent: a Ray actor pinned to one host, running as root there, through which
the coordinator builds, drives and tears down that host's share of the emulation.

This module runs on the host (inside a Ray worker the host's Ray node started): it
imports nothing of the coordinator's state, and every call answers with plain data.
`clock_offset_ms` makes this host's clock that far ahead of the machine's, for the agent
and every process it starts (tests inject a known offset: the coordinator must measure
it, and the run's events must come out on one timeline all the same).
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any


class HostAgent:
    """Made remote with `agent_class()`; one per host and run."""

    def __init__(self, host: str, prefix: str, clock_offset_ms: float = 0.0,
                 lease_s: float = 10.0) -> None:
        self.host, self.prefix = host, prefix
        self.offset_s = clock_offset_ms / 1000
        self.to_coordinator_s = 0.0  # minus the offset the coordinator measured
        self.emu: Any = None
        self.ledger: Any = None
        self.procs: dict[int, Any] = {}  # pid -> Popen of what the coordinator spawned
        self.lease(lease_s)  # a coordinator that dies before its first heartbeat
        unnice()

    def lease(self, seconds: float) -> None:
        """The coordinator is alive for `seconds` more; renewed by its heartbeat. When a
        lease runs out (the coordinator was killed), the agent removes the run here:
        its share and everything else marked with the run's prefix on this machine."""
        import threading

        self.lease_until = time.monotonic() + seconds
        if getattr(self, "watch", None) is None:
            self.watch = threading.Thread(target=self._watch, name="lease", daemon=True)
            self.watch.start()

    def _watch(self) -> None:
        import subprocess
        import sys

        while time.monotonic() < self.lease_until:
            time.sleep(0.5)
        if getattr(self, "released", False):
            return
        # from a process of its own (harness.emulation.reap says why), which outlives us
        subprocess.Popen([sys.executable, "-m", "harness.emulation.reap", self.prefix],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)

    def release(self) -> None:
        """The coordinator ends the run itself: no lease to watch any more."""
        self.released = True
        self.lease_until = 0.0

    def now(self) -> float:
        """This host's monotonic clock (s), the one its events are stamped with."""
        return time.monotonic() + self.offset_s

    def set_clock(self, offset_ms: float) -> None:
        """The offset the coordinator measured to this host's clock: every process started
        from now on stamps its instants on the coordinator's clock (`harness.core.hostclock`)."""
        self.to_coordinator_s = -offset_ms / 1000

    def clock_env(self) -> dict[str, str]:
        return {"HX_CLOCK_SHIFT_S": repr(self.offset_s + self.to_coordinator_s)}

    def underlay(self, remote_ip: str) -> str:
        """This host's device toward `remote_ip` (another host): where its tunnels go out."""
        import json
        import subprocess

        out = subprocess.run(["ip", "-j", "route", "get", remote_ip], capture_output=True,
                             text=True, check=True)
        return json.loads(out.stdout)[0]["dev"]

    def hello(self) -> dict[str, Any]:
        """Who and where the agent is: the host, its process, its network namespace."""
        return {"host": self.host, "pid": os.getpid(), "uid": os.geteuid(),
                "netns": os.readlink("/proc/self/ns/net"), "hostname": socket.gethostname(),
                "addresses": addresses(), "cpus": os.cpu_count()}


    # -- this host's share of the emulation ---------------------------------------------

    def build(self, topo: Any, network: Any, backend: dict, shaper: dict, seed: int,
              share: Any, stages: list | None = None,
              shared: list[str] | None = None) -> dict[str, Any]:
        """Bring up this host's share (`harness.emulation.share.Share`): its nodes, its
        links, its halves of the carried links and their tunnels. The backend is
        prepared here as the coordinator prepared its own: checked, its images (a Docker
        backend's, and `stages` served from images) found on this host's daemon, the
        run's `shared` folders given to its nodes."""
        from harness.core.config import build_plugin
        from harness.emulation.network import Emulation

        unnice()
        self.ledger = agent_ledger(self.prefix)
        back = build_plugin("backend", backend)
        back.validate(topo, [])
        if stages:
            back.check_stage_images(stages, topo)
        for path in shared or []:
            back.share(path)
        self.emu = Emulation(topo, network, back, build_plugin("shaper", shaper),
                             self.ledger, seed, share)
        self.emu.start()
        return {"timings": self.emu.timings, "nodes": sorted(self.emu.nodes),
                "links": sorted(self.emu.links),
                "python": {n: node.python for n, node in self.emu.nodes.items()}}

    def emulation(self, op: str, *args: Any) -> Any:
        """A runtime change of the share (set_link, restore_link, set_link_up,
        silence_node, partition, heal, follow_trace, stop_traces), a reading
        (trace_errors, describe), or the schedule's start (run_started)."""
        if op not in EMULATION_OPS:
            raise ValueError(f"not an emulation operation: {op}")
        return getattr(self.emu, op)(*args)

    def link_stats(self) -> dict:
        return self.emu.shaper.stats()

    def node_run(self, node: str, argv: list[str], timeout: float = 30) -> str:
        """Run `argv` in one of this host's nodes and wait (its output)."""
        return self.emu.nodes[node].run(argv, timeout=timeout)

    # -- processes of this host's nodes, for the coordinator's RemoteNode ----------------

    def spawn(self, node: str, argv: list[str], stdin: bool, stdout: str | None,
              stderr: str | None, env: dict[str, str] | None = None) -> int:
        """Start `argv` in `node`; stdout/stderr: "pipe", "stdout" (stderr only), a file
        path (appended to), or None (inherited). Its pid, the handle of later calls."""
        import subprocess

        def where(x: str | None):
            if x == "pipe":
                return subprocess.PIPE
            if x == "stdout":
                return subprocess.STDOUT
            return open(x, "a") if x else None  # noqa: SIM115 (the child holds it)

        kw: dict[str, Any] = {"stdin": subprocess.PIPE if stdin else subprocess.DEVNULL,
                              "stdout": where(stdout), "stderr": where(stderr), "text": True}
        n = self.emu.nodes[node]
        # the process's environment as the node would give it (a container's own, else
        # ours), and this host's clock shift
        base = env if env is not None else getattr(n, "env", os.environ)
        kw["env"] = {**base, **self.clock_env()}
        unnice()
        p = n.popen(argv, **kw)
        self.procs[p.pid] = p
        return p.pid

    def proc(self, pid: int, op: str, *args: Any) -> Any:
        """One operation on a spawned process: poll, wait (timeout), signal (signum),
        readline, write (text), close_stdin."""
        p = self.procs[pid]
        if op == "poll":
            return p.poll()
        if op == "wait":
            return p.wait(*args)
        if op == "signal":
            if p.poll() is None:
                p.send_signal(int(args[0]))
            return None
        if op == "readline":
            return p.stdout.readline()
        if op == "write":
            p.stdin.write(args[0])
            p.stdin.flush()
            return None
        if op == "close_stdin":
            p.stdin.close()
            return None
        raise ValueError(f"not a process operation: {op}")

    def node_call(self, node: str, method: str, *args: Any) -> Any:
        """A method of one of this host's nodes (NODE_OPS) or of its resources (RES_OPS)."""
        n = self.emu.nodes[node]
        if method in NODE_OPS:
            return getattr(n, method)(*args)
        if method in RES_OPS:
            return getattr(n.resources, method)(*args)
        raise ValueError(f"not a node operation: {method}")

    def teardown(self) -> dict[str, float]:
        """Everything of the share; then, on a host the run's state file is this agent's
        (not the coordinator's machine), everything else of the run's prefix here."""
        import time as _time

        from harness.emulation.ledger import remove_run

        t = _time.monotonic()
        if self.emu is not None:
            self.emu.stop()
            self.emu = None
        if self.ledger is not None and self.ledger.owner_pid == os.getpid():
            remove_run(self.prefix)
        return {"teardown_s": _time.monotonic() - t}


NODE_OPS = ("kill_all", "hang", "resume", "processes", "run", "net_run", "signal_all",
            "start_image")
RES_OPS = ("set_cpu", "set_memory", "cpu_usage_s", "oom_kills", "pids")
EMULATION_OPS = ("set_link", "restore_link", "set_link_up", "silence_node", "partition",
                 "heal", "follow_trace", "stop_traces", "trace_errors", "describe",
                 "run_started")


def unnice() -> None:
    """Every thread of the agent back to nice 0: a Ray worker runs at nice 15 (on a host
    a user set up, RAY_worker_niceness may not say 0), and what it starts, the host's
    nodes, would inherit it (Linux's nice is per thread)."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.setpriority(os.PRIO_PROCESS, int(tid), 0)
        except OSError:
            continue


def agent_ledger(prefix: str) -> Any:
    """The run's ledger on this host: the coordinator's when it is on this machine (its
    state file names the coordinator, whose teardown removes everything), else this
    agent's own state file, so `harness.clean` here can tell a dead run's leftovers."""
    import time as _time

    from harness.emulation.ledger import Ledger, _start_time, state_dir

    path = state_dir() / f"{prefix}.json"
    if path.exists():
        import json

        return Ledger(**json.loads(path.read_text()))
    led = Ledger(prefix, os.getpid(), _start_time(os.getpid()), _time.time(),
                 notes={"agent_of": prefix})
    state_dir().mkdir(mode=0o700, parents=True, exist_ok=True)
    led.save()
    return led


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

    # threaded: a sensor's readline or a wait must not hold up a fault's call
    return ray.remote(num_cpus=0, max_concurrency=64)(HostAgent)


def start_agents(hosts: list, prefix: str, offsets_ms: dict[str, float] | None = None,
                 lease_s: float = 10.0) -> dict[str, Any]:
    """One agent per host (a `ClusterHost`), pinned to its Ray node; host -> handle."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    cls = agent_class()
    agents = {}
    for h in hosts:
        agents[h.info.name] = cls.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(h.node_id, soft=False),
            # detached: an agent outlives a killed coordinator, to remove the run (lease)
            name=f"{prefix}-{h.info.name}", lifetime="detached",
        ).remote(h.info.name, prefix, (offsets_ms or {}).get(h.info.name, 0.0), lease_s)
    ray.get([a.hello.remote() for a in agents.values()], timeout=60)
    return agents
