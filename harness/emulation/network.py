"""The running emulated network: nodes from a backend, links shaped by a shaper.

Addressing: every node has one IPv4 address, set as /32 on each of its
interfaces; static /32 routes follow the least-delay path, so multi-hop
topologies route like a small static network. Everything created is named
with the run's prefix and removed by `Ledger`-driven cleanup on any exit.

Network set-up (in bulk: `harness.emulation.wiring`) and changes run host tools in a
node's namespace (`EmuNode.net_run`) or set it from this process (`net_tune`), so a
node needs no ip/tc/nft/sysctl of its own; its workload runs via `popen`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

from harness.core.config import LinkProps, NetworkConfig
from harness.emulation.backends.base import Backend, EmuNode
from harness.emulation.ledger import Ledger, remove_run
from harness.emulation.shapers.base import Shaper
from harness.emulation.share import Share
from harness.emulation.tc import DirState, EmulationError, cap_mbit, rate_cmd
from harness.emulation.topology import Link, Topology
from harness.emulation.traces import TraceFollower, applied_rates, load_mahimahi, rates_mbit
from harness.emulation.wiring import Wiring, configure, create_tunnels, create_veths

TRACE_WINDOW_MS = 100


@dataclass
class LinkState:
    spec: Link
    index: int
    a_dev: str
    b_dev: str
    fwd: DirState  # a -> b
    rev: DirState  # b -> a
    configured: LinkProps
    admin_up: bool = True
    silenced_by: set[str] = field(default_factory=set)  # crashed end nodes
    traces: list[TraceFollower] = field(default_factory=list)
    sends: frozenset[str] = frozenset(("fwd", "rev"))  # directions shaped here (a share's)
    extra_delay_ms: float = 0.0  # a carried link's: the hosts' network's, added where sent
    mtu: int = 1500  # a carried link's: the tunnel's

    def carries(self) -> bool:
        return self.admin_up and not self.silenced_by

    def shaped(self, direction: str) -> DirState:
        """What the shaper here applies to `direction`: the direction itself if this host
        sends it, else a pass-through (shaped where it was sent), up or down with it."""
        ds = self.fwd if direction == "fwd" else self.rev
        if direction in self.sends:
            if self.extra_delay_ms:
                return DirState(dataclasses.replace(
                    ds.props, delay_ms=(ds.props.delay_ms or 0) + self.extra_delay_ms), ds.up)
            return ds
        return DirState(LinkProps.unshaped(ds.props.queue_pkts), ds.up)


def carried(share: Share | None, link: str) -> dict:
    """A link carried to another host: the hosts' network's delay and the tunnel's MTU."""
    tunnel = share.tunnels.get(link) if share else None
    return {"extra_delay_ms": tunnel.extra_delay_ms, "mtu": tunnel.mtu} if tunnel else {}


class Emulation:
    def __init__(self, topo: Topology, network: NetworkConfig, backend: Backend,
                 shaper: Shaper, ledger: Ledger, seed: int = 1, share: Share | None = None) -> None:
        """`share`: this host's part of a topology split over hosts (None: all of it)."""
        self.topo, self.network, self.backend = topo, network, backend
        self.share = share
        self.shaper, self.ledger, self.seed = shaper, ledger, seed
        self.base = network.defaults()
        self.ips = topo.addresses()
        self.devs = topo.interfaces()
        self.nodes: dict[str, EmuNode] = {}
        self.links: dict[str, LinkState] = {}
        self.partitions = 0
        self.partitioned: set[str] = set()  # nodes holding partition tables
        self.timings: dict[str, float] = {}
        # errors of trace followers already stopped (a restore, a new trace): kept for
        # trace_errors(), which the run reads at its end
        self.stopped_trace_errors: list[str] = []

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        t0 = time.monotonic()
        share = self.share
        self.shaper.setup(self.ledger.prefix, self.ledger.env(), share.host if share else "")
        here = [n for n in self.topo.nodes if share is None or share.has(n.name)]
        self.nodes.update(self.backend.start_nodes(here, self.ips, self.ledger))
        t_nodes = time.monotonic()
        for i, link in enumerate(self.topo.links):
            sends = share.sends(link.a, link.b) if share else {"fwd", "rev"}
            if not sends:
                continue
            props = link.shaped_props(self.base)
            self.links[link.name] = LinkState(
                link, i, self.devs[(link.a, link.name)], self.devs[(link.b, link.name)],
                DirState(dataclasses.replace(props)), DirState(dataclasses.replace(props)),
                props, sends=frozenset(sends), **carried(share, link.name))
        plan = Wiring(self.topo, self.base, share.tunnels if share else {})
        create_veths(plan.veths({n: str(node.ns_pid) for n, node in self.nodes.items()},
                                self.shaper))
        if share and share.tunnels:
            create_tunnels(plan.tunnels_cmds(self.shaper, set(self.nodes)))
        dirs = {name: (st.fwd, st.rev) for name, st in self.links.items()}
        cc = self.network.congestion_control()
        configure(self.nodes, {n: plan.node(n, self.shaper.netem, dirs, cc) for n in self.nodes})
        wires = []
        for name, st in self.links.items():
            pa, _ = self.shaper.peer(st.index, "a", "")
            pb, _ = self.shaper.peer(st.index, "b", "")
            wires.append((name, pa, pb, st.shaped("fwd"), st.shaped("rev"),
                          self.seed * 100_003 + st.index))
        self.shaper.wire_up(wires)
        show = getattr(self.backend, "show_link", None) if share is None else None
        for st in self.links.values():
            if show:
                show(st.spec.a, st.a_dev, st.spec.b, st.b_dev, self.ips)
            if st.spec.trace_fwd:
                self.follow_trace(st.spec.name, "fwd", st.spec.trace_fwd)
            if st.spec.trace_rev:
                self.follow_trace(st.spec.name, "rev", st.spec.trace_rev)
        t1 = time.monotonic()
        self.timings = {"nodes_s": t_nodes - t0, "links_s": t1 - t_nodes, "up_s": t1 - t0}

    def run_started(self) -> None:
        """The schedule starts (the backend starts processes as a device would from now)."""
        self.backend.run_started()

    def stop(self) -> None:
        """Tear down everything of this run, whatever state it is in."""
        for st in self.links.values():
            for tf in st.traces:
                tf.stop()
        try:
            self.shaper.stop()
        finally:
            try:
                self.backend.stop()
            finally:
                if self.share is None:  # a host's share: the run's teardown removes the rest
                    remove_run(self.ledger.prefix)

    # -- runtime link changes ------------------------------------------------------------

    def _dirs(self, st: LinkState, direction: str) -> list[tuple[str, DirState, EmuNode, str]]:
        """The directions asked for that this host sends (all of them on one host)."""
        if direction not in ("fwd", "rev", "both"):
            raise EmulationError(f"direction={direction!r}: one of fwd, rev, both")
        out = []
        if direction in ("fwd", "both") and "fwd" in st.sends:
            out.append(("fwd", st.fwd, self.nodes[st.spec.a], st.a_dev))
        if direction in ("rev", "both") and "rev" in st.sends:
            out.append(("rev", st.rev, self.nodes[st.spec.b], st.b_dev))
        return out

    def set_link(self, name: str, change: LinkProps, direction: str = "both") -> None:
        """Change bandwidth/delay/jitter/loss/queue in place while traffic flows."""
        st = self.links[name]
        for d, ds, node, dev in self._dirs(st, direction):
            new = change.over(ds.props)
            if new.bw_mbit != ds.props.bw_mbit:
                node.net_run(["tc", *rate_cmd(dev, cap_mbit(new))])
            old = ds.props
            ds.props = new
            if (new.delay_ms, new.jitter_ms, new.loss_pct, new.queue_pkts) != (
                    old.delay_ms, old.jitter_ms, old.loss_pct, old.queue_pkts):
                self.shaper.apply(name, d, st.shaped(d), (node, dev))

    def restore_link(self, name: str) -> None:
        st = self.links[name]
        had_trace = bool(st.traces)
        self.stop_traces(name)
        self.set_link(name, st.configured)
        if had_trace:  # a trace moves the htb rate without recording it in ds.props
            for _d, ds, node, dev in self._dirs(st, "both"):
                node.net_run(["tc", *rate_cmd(dev, cap_mbit(ds.props))])

    def _refresh_up(self, st: LinkState) -> None:
        """Both directions follow the link's state, also one sent by another host (the
        pass-through here drops what arrives for a crashed or cut link's end)."""
        for d, ds, node_name, dev in (("fwd", st.fwd, st.spec.a, st.a_dev),
                                      ("rev", st.rev, st.spec.b, st.b_dev)):
            if ds.up != st.carries():
                ds.up = st.carries()
                self.shaper.apply(st.spec.name, d, st.shaped(d),
                                  (self.nodes.get(node_name), dev))

    def set_link_up(self, name: str, up: bool) -> None:
        st = self.links[name]
        st.admin_up = up
        self._refresh_up(st)

    def silence_node(self, node: str, silent: bool) -> None:
        """A crashed node's links carry nothing (no carrier change: peers see timeouts)."""
        for link in self.topo.links_of(node):
            st = self.links.get(link.name)
            if st is None:  # neither end on this host
                continue
            if silent:
                st.silenced_by.add(node)
            else:
                st.silenced_by.discard(node)
            self._refresh_up(st)

    def follow_trace(self, name: str, direction: str, path: str) -> None:
        """Follow a Mahimahi trace; it replaces any trace the link was following."""
        st = self.links[name]
        self.stop_traces(name)
        rates = applied_rates(rates_mbit(load_mahimahi(path), TRACE_WINDOW_MS),
                              TRACE_WINDOW_MS)
        for _d, _ds, node, dev in self._dirs(st, direction):
            def apply(rate: float, node: EmuNode = node, dev: str = dev) -> None:
                node.net_run(["tc", *rate_cmd(dev, rate)])
            tf = TraceFollower(f"{name}-{_d}", rates, TRACE_WINDOW_MS, apply)
            st.traces.append(tf)
            tf.start_now()

    def stop_traces(self, name: str) -> None:
        st = self.links[name]
        for tf in st.traces:
            tf.stop()
        for tf in st.traces:  # no rate change may land after this returns
            tf.join(timeout=10)
        self.stopped_trace_errors += [f"{name}: {tf.error}" for tf in st.traces if tf.error]
        st.traces.clear()

    def trace_errors(self) -> list[str]:
        """Every error a trace follower met during the run, stopped followers' included:
        each makes the run INVALID (the link did not follow its trace)."""
        return self.stopped_trace_errors + [f"{st.spec.name}: {tf.error}"
                                            for st in self.links.values()
                                            for tf in st.traces if tf.error]

    # -- partitions ----------------------------------------------------------------------

    def partition(self, groups: list[list[str]]) -> str:
        """Nodes of different groups cannot exchange packets (nft drop at both ends).

        Dropped on input only: a drop in the output hook fails the sender's send()
        with EPERM at once, where a real partition just loses the packet (silence).
        """
        table = f"{self.ledger.prefix}p{self.partitions}"
        self.partitions += 1
        for i, group in enumerate(groups):
            others = [self.ips[n] for j, g in enumerate(groups) if j != i for n in g]
            if not others:
                continue
            rules = (
                f"table inet {table} {{\n"
                f" set peers {{ type ipv4_addr; elements = {{ {', '.join(others)} }} }}\n"
                " chain in { type filter hook input priority 0; ip saddr @peers drop; }\n"
                "}\n"
            )
            for n in group:
                if n not in self.nodes:  # on another host: its agent installs its own
                    continue
                self.nodes[n].net_run(["nft", "-f", "-"], input=rules)
                self.partitioned.add(n)
        return table

    def heal(self) -> None:
        """Remove every partition."""
        for name in sorted(self.partitioned):
            node = self.nodes[name]
            for line in node.net_run(["nft", "list", "tables"]).splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[2].startswith(f"{self.ledger.prefix}p"):
                    node.net_run(["nft", "delete", "table", parts[1], parts[2]])
        self.partitioned.clear()

    # -- introspection ---------------------------------------------------------------------

    def describe(self) -> dict:
        return {
            "shaper": self.shaper.name,
            "tcp_cc": self.network.congestion_control(),
            "prefix": self.ledger.prefix,
            "nodes": {n: {"ip": self.ips[n], "role": self.topo.node(n).role}
                      for n in self.nodes},
            "links": {name: {"a": st.spec.a, "b": st.spec.b, "a_dev": st.a_dev,
                             "b_dev": st.b_dev, **dataclasses.asdict(st.configured),
                             **({"real": True} if st.spec.real else {})}
                      for name, st in self.links.items()},
        }
