"""A backend's validation decides, and says what it decided, without changing its input
(no root, no Docker): `backend.gpu=prefer` on a host without GPUs runs a node asking for
them on CPU, in the topology `validate` returns, never in the one it was given."""

from __future__ import annotations

import copy

import pytest

from harness.core.config import ConfigError
from harness.emulation.topology import Link, Node, Topology
from tests.emulation_fakes import FakeBackend

NO_GPU = "no GPU here (test)"


class NoGpuBackend(FakeBackend):
    def gpu_missing(self, nodes: list[Node]) -> str | None:
        return NO_GPU if nodes else None


class GpuBackend(FakeBackend):
    def gpu_missing(self, nodes: list[Node]) -> str | None:
        return None


def topology() -> Topology:
    t = Topology("t", [Node("d1", role="device"), Node("e1", role="edge", gpus=1),
                       Node("e2", role="edge", gpus="all",
                            providers=["CUDAExecutionProvider", "OtherProvider"])],
                 [Link("d1", "e1"), Link("d1", "e2")])
    t.validate()
    return t


def test_prefer_demotes_a_copy_and_leaves_the_topology_passed_in_unchanged() -> None:
    topo = topology()
    before = copy.deepcopy(topo)
    backend, warnings = NoGpuBackend(), []
    backend.gpu = "prefer"
    decided = backend.validate(topo, warnings)
    assert topo == before  # not one field of the input changed
    assert [n.gpus for n in topo.nodes] == [0, 1, "all"]
    assert topo.node("e1").providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    # what the backend will run: the GPU nodes on CPU, the rest as given
    assert [(n.name, n.gpus, n.providers) for n in decided.nodes] == [
        ("d1", 0, ["CPUExecutionProvider"]), ("e1", 0, ["CPUExecutionProvider"]),
        ("e2", 0, ["OtherProvider"])]
    assert decided.links == topo.links and decided.node("d1") == topo.node("d1")
    assert [w.split(" asked")[0] for w in warnings] == ["node e1", "node e2"]
    assert all(NO_GPU in w and "run on CPU" in w for w in warnings)


def test_nothing_to_decide_returns_the_topology_as_given() -> None:
    topo = topology()
    assert GpuBackend().validate(topo, []) is topo  # GPUs here for every node asking
    topo.nodes = topo.nodes[:1]
    before = copy.deepcopy(topo)
    assert NoGpuBackend().validate(topo, []) is topo and topo == before  # none asked


def test_require_refuses_and_changes_nothing() -> None:
    topo = topology()
    before = copy.deepcopy(topo)
    with pytest.raises(ConfigError, match="topology node e1: gpus=1"):
        NoGpuBackend().validate(topo, [])
    assert topo == before


def test_make_backend_returns_the_run_as_decided_and_leaves_the_experiment_alone(
        monkeypatch) -> None:
    """The run's code path: the experiment composed from the config keeps what was asked
    for; the one `make_backend` returns (what the network is built from) has the nodes on
    CPU, and the warnings say why."""
    from harness.emulation.backends.mininet import MininetBackend
    from harness.run.lifecycle import make_backend
    from tests.helpers import exp_for

    monkeypatch.setattr(MininetBackend, "gpu_missing", NoGpuBackend.gpu_missing)
    monkeypatch.setattr(MininetBackend, "gpu", "prefer")  # docker's backend.gpu=prefer
    exp = exp_for("topology=device_edge_cloud", "topology.edge_gpus=1")
    before = copy.deepcopy(exp.topology)
    warnings: list[str] = []
    backend, run = make_backend(exp, warnings)
    assert isinstance(backend, MininetBackend) and exp.topology == before
    assert run is not exp and run.topology is not exp.topology and run.config == exp.config
    assert [n.gpus for n in run.topology.nodes if n.role == "edge"] == [0, 0]
    assert [n.gpus for n in exp.topology.nodes if n.role == "edge"] == [1, 1]
    assert len(warnings) == 2 and all(NO_GPU in w for w in warnings)
    plain = exp_for("topology=device_edge_cloud")
    assert make_backend(plain)[1] is plain  # nothing decided: the experiment as composed
