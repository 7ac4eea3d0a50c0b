"""The run's emulation when its topology spans hosts: the interface of
`harness.emulation.network.Emulation` (nodes, addresses, links, runtime changes,
counters, teardown), each call sent to the host agents whose share it concerns.

Nodes are `RemoteNode`s (their host's agent runs their processes); a change of a
link goes to the hosts of its ends (each applies the directions it sends, and both
follow the link's up or down); a partition and a heal go to every host (each installs
its own nodes' tables); counters of a direction are its sending host's.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from harness.core.config import NetworkConfig
from harness.emulation.ledger import Ledger
from harness.emulation.network import LinkState
from harness.emulation.tc import DirState
from harness.emulation.topology import Topology
from harness.hosts.remote import RemoteNode, on_host

# links between hosts run through the delay line (auto would pick netem where the kernel
# has it; hosts.check refuses netem itself)
USERSPACE = {"_target_": "harness.emulation.shapers.userspace.UserspaceShaper"}


class SplitShaper:
    """What the run reads of a shaper: its name and every link's counters."""

    def __init__(self, emu: SplitEmulation, name: str) -> None:
        self.emu, self.name = emu, name

    def stats(self) -> dict:
        per_host = self.emu.each("link_stats")
        out: dict[str, dict] = {}
        for name, st in self.emu.links.items():
            ha, hb = self.emu.host_of[st.spec.a], self.emu.host_of[st.spec.b]
            fwd, rev = per_host[ha].get(name, {}), per_host[hb].get(name, {})
            out[name] = {"fwd": fwd.get("fwd", {}), "rev": rev.get("rev", {})}
        return out


class SplitEmulation:
    def __init__(self, topo: Topology, network: NetworkConfig, session: Any,
                 host_of: dict[str, str], backend: dict, shaper: dict, ledger: Ledger,
                 seed: int = 1, stages: list | None = None,
                 shared: list[str] | None = None) -> None:
        self.topo, self.network, self.session, self.host_of = topo, network, session, host_of
        self.backend_cfg, self.shaper_cfg, self.ledger, self.seed = backend, shaper, ledger, seed
        self.stages, self.shared = stages or [], shared or []  # what each agent's backend needs
        self.base = network.defaults()
        self.ips = topo.addresses()
        self.devs = topo.interfaces()
        self.nodes: dict[str, RemoteNode] = {}
        self.links: dict[str, LinkState] = {}
        self.timings: dict[str, float] = {}
        self.shaper = SplitShaper(self, "userspace")
        self.backend = None  # no CLI across hosts
        self.built: list[str] = []

    def start(self) -> None:
        t0 = time.monotonic()
        for i, link in enumerate(self.topo.links):
            props = link.shaped_props(self.base)
            carried = self.host_of[link.a] != self.host_of[link.b]
            self.links[link.name] = LinkState(
                link, i, self.devs[(link.a, link.name)], self.devs[(link.b, link.name)],
                DirState(dataclasses.replace(props)), DirState(dataclasses.replace(props)),
                props, **({"extra_delay_ms": self.session.carried_delay_ms,
                           "mtu": self.session.cfg.tunnel_mtu} if carried else {}))
        self.built = sorted(set(self.host_of.values()))
        replies = self.session.build(self.topo, self.network, self.backend_cfg,
                                     self.shaper_cfg, self.seed, self.host_of, self.stages,
                                     self.shared)
        for n in self.topo.nodes:
            h = self.host_of[n.name]
            self.nodes[n.name] = RemoteNode(n.name, self.ips[n.name], h,
                                            self.session.agents[h], replies[h]["python"][n.name])
        self.timings = {"nodes_s": max(r["timings"]["nodes_s"] for r in replies.values()),
                        "links_s": max(r["timings"]["links_s"] for r in replies.values()),
                        "up_s": time.monotonic() - t0}

    def each(self, method: str, *args: Any, hosts: list[str] | None = None) -> dict[str, Any]:
        """`method` on the agents of `hosts` (default: every host of the run), at once."""
        hosts = hosts if hosts is not None else self.built
        refs = {h: getattr(self.session.agents[h], method).remote(*args) for h in hosts}
        return {h: on_host(h, method, r, 120) for h, r in refs.items()}

    def host_errors(self) -> list[str]:
        """Why the run is INVALID because of its hosts (an agent that stopped answering)."""
        return [f"host {h}: its agent stopped answering" for h in self.session.dead_hosts()]

    def _op(self, op: str, *args: Any, hosts: list[str] | None = None) -> dict[str, Any]:
        return self.each("emulation", op, *args, hosts=hosts)

    def run_started(self) -> None:
        self._op("run_started")

    def _ends(self, link: str) -> list[str]:
        st = self.links[link]
        return sorted({self.host_of[st.spec.a], self.host_of[st.spec.b]})

    def stop(self) -> None:
        """Every host's share, at once; what an agent cannot reach stays for the run's
        prefix (remove_run, harness.clean)."""
        with ThreadPoolExecutor(max_workers=max(1, len(self.built))) as pool:
            futures = [pool.submit(lambda h=h: on_host(
                h, "teardown", self.session.agents[h].teardown.remote(), 120))
                for h in self.built]
        errors = [f.exception() for f in futures if f.exception() is not None]
        self.built = []
        if errors:
            raise errors[0]

    # -- the Emulation interface --------------------------------------------------------

    def set_link(self, name: str, change: Any, direction: str = "both") -> None:
        self._op("set_link", name, change, direction, hosts=self._ends(name))

    def restore_link(self, name: str) -> None:
        self._op("restore_link", name, hosts=self._ends(name))

    def set_link_up(self, name: str, up: bool) -> None:
        self._op("set_link_up", name, up, hosts=self._ends(name))

    def silence_node(self, node: str, silent: bool) -> None:
        hosts = sorted({self.host_of[x] for lk in self.topo.links_of(node) for x in (lk.a, lk.b)})
        self._op("silence_node", node, silent, hosts=hosts)

    def follow_trace(self, name: str, direction: str, path: str) -> None:
        self._op("follow_trace", name, direction, path, hosts=self._ends(name))

    def stop_traces(self, name: str) -> None:
        self._op("stop_traces", name, hosts=self._ends(name))

    def trace_errors(self) -> list[str]:
        return [e for errs in self._op("trace_errors").values() for e in errs]

    def partition(self, groups: list[list[str]]) -> str:
        tables = self._op("partition", groups)
        return tables[self.built[0]]

    def heal(self) -> None:
        self._op("heal")

    def describe(self) -> dict:
        parts = self._op("describe")
        first = parts[self.built[0]]
        return {**first,  # (which host runs what: the summary's `hosts`)
                "nodes": {n: d for p in parts.values() for n, d in p["nodes"].items()},
                "links": {k: v for p in parts.values() for k, v in p["links"].items()}}


def split_up(exp: Any, ledger: Ledger,
             shared: list[str] | None = None) -> tuple[Any, SplitEmulation, dict]:
    """The run's hosts (a `HostSession`), placement and its emulation across them, up;
    and the summary's `hosts` part. `shared`: the folders the run's backend gives its
    nodes (the run's own). The caller tears down (`split_down`) in a finally."""
    from harness.hosts.placer import place
    from harness.hosts.session import HostSession

    session = HostSession(exp.hosts, ledger)
    emu = None
    try:
        session.start()
        infos = [h.info for h in session.hosts]
        placement = place(exp.topology, infos, exp.hosts.place)
        emu = SplitEmulation(exp.topology, exp.network, session, placement.host_of,
                             exp.backend, USERSPACE, ledger, exp.seed,
                             exp.pipeline.stages if exp.workload else [], shared)
        emu.start()
    except BaseException:
        split_down(session, emu)
        raise
    part = {"hosts": {"kind": exp.hosts.kind, **placement.describe(infos),
                      "tunnel_mtu": exp.hosts.tunnel_mtu}}
    return session, emu, part


def clock_report(before: dict, after: dict | None, bound_ms: float | None,
                 mttd_ms: float | None) -> tuple[dict, list[str]]:
    """The summary's `clock` (each host's offset before and after the run, what it moved,
    the uncertainty over the whole run) and why the run is INVALID for it: an uncertainty
    above `bound_ms` (hosts.clock_bound_ms), by default a tenth of the run's MTTD (events
    on different hosts are ordered to within it), or offsets that could not be measured
    again after the run."""
    from harness.hosts.clock import drift

    bound = bound_ms if bound_ms is not None else (mttd_ms / 10 if mttd_ms else None)
    out, reasons = {}, []
    for h, b in sorted(before.items()):
        a = (after or {}).get(h)
        if a is None:
            reasons.append(f"clock: host {h}: its offset could not be measured after the run")
            out[h] = {"before": b.as_dict(), "after": None, "moved_ms": None,
                      "uncertainty_ms": None, "bound_ms": bound}
            continue
        rep = {**drift(b, a), "bound_ms": bound}
        out[h] = rep
        if bound is not None and rep["uncertainty_ms"] > bound:
            reasons.append(f"clock: host {h}: uncertainty {rep['uncertainty_ms']:.3f} ms > "
                           f"bound {bound:.3f} ms (hosts.clock_bound_ms, else MTTD / 10)")
    return out, reasons


def split_down(session: Any, emu: SplitEmulation | None) -> None:
    try:
        if emu is not None:
            emu.stop()
    finally:
        session.stop()
