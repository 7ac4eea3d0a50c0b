"""Where stage instances run when a stage names a role: one on every node of that role.

A fleet runs the same partition on every device, not on one named node, and a
device's data must stay on its own path: its camera feeds its own head, its
head its own edge server. So each sensor sends to the nearest instance of the
first stage and each instance forwards to the nearest instance of the next one
(fewest links; on a tie, the node first in the topology's order). With one
node per stage this is the plain chain, so a pipeline without roles is placed
exactly as before. Computed from the topology alone, before any network exists, as part
of the pipeline's plan (plan.py).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from harness.core.config import fail
from harness.emulation.topology import Topology


@dataclass(frozen=True)
class Placement:
    nodes: dict[str, list[str]] = field(default_factory=dict)  # stage -> nodes it runs on
    # stage -> {any node: the node of that stage's instance nearest to it}
    toward: dict[str, dict[str, str]] = field(default_factory=dict)

    def next_node(self, stage: str, node: str) -> str:
        """Where an instance on `node` (or a sensor on it) sends to reach `stage`."""
        return self.toward[stage][node]

    @property
    def n_instances(self) -> int:
        return sum(len(v) for v in self.nodes.values())


def hops_from(topo: Topology, src: str) -> dict[str, int]:
    """Links from `src` to every node it reaches (breadth first)."""
    near: dict[str, list[str]] = {n.name: [] for n in topo.nodes}
    for lk in topo.links:
        near[lk.a].append(lk.b)
        near[lk.b].append(lk.a)
    dist, todo = {src: 0}, deque([src])
    while todo:
        n = todo.popleft()
        for m in near[n]:
            if m not in dist:
                dist[m] = dist[n] + 1
                todo.append(m)
    return dist


def nearest(topo: Topology, sources: list[str]) -> dict[str, str]:
    """Every node reachable from `sources` -> the source fewest links away (ties: the
    earlier source)."""
    best: dict[str, tuple[int, int, str]] = {}
    for i, src in enumerate(sources):
        for node, d in hops_from(topo, src).items():
            if (d, i) < best.get(node, (1 << 30, 0, ""))[:2]:
                best[node] = (d, i, src)
    return {n: src for n, (_, _, src) in best.items()}


def place(stages: list, topo: Topology, key: str = "pipeline") -> Placement:
    """The nodes of each stage (`node`, or every node of `role`) and where each instance
    sends; ConfigError for a role without nodes, two stages on one node when a role
    places them, or an instance that cannot reach the next stage."""
    out = Placement({}, {})
    order = [n.name for n in topo.nodes]
    for i, s in enumerate(stages):
        if s.role:
            nodes = [n.name for n in topo.nodes if n.role == s.role]
            if not nodes:
                fail(f"{key}.stages[{i}].role", s.role, f"topology {topo.name} has no "
                                                        f"{s.role} node")
        else:
            nodes = [s.node]
        out.nodes[s.name] = sorted(nodes, key=order.index)
        out.toward[s.name] = nearest(topo, out.nodes[s.name])
    if any(s.role for s in stages):  # one stage per node: every instance on the same port
        seen: dict[str, str] = {}
        for i, s in enumerate(stages):
            for n in out.nodes[s.name]:
                if n in seen:
                    fail(f"{key}.stages[{i}].{'role' if s.role else 'node'}",
                         s.role or s.node, f"stage {seen[n]} runs on {n} too (one stage "
                                           f"per node when a stage names a role)")
                seen[n] = s.name
    for i, (s, nxt) in enumerate(zip(stages, stages[1:], strict=False)):
        for n in out.nodes[s.name]:
            if n not in out.toward[nxt.name]:
                fail(f"{key}.stages[{i + 1}].{'role' if nxt.role else 'node'}",
                     nxt.role or nxt.node, f"no instance of {nxt.name} is reachable from {n}")
    return out
