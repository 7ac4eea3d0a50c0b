"""One path rule (issue 17, item 4): the kernel routes, the forwarding nodes and the
adaptive policy's predictions all follow `Topology.path_links` (least one-way delay, ties
to fewest links). Here a two-hop path (d1-e1-c1, 1 + 1 ms) is faster than the direct
uplink (d1-c1, 20 ms) and than the other edge's (d1-e2-c1, 5 + 5 ms): fewest links would
take the uplink, and the kernel used to route every neighbour over its direct link.
"""

from __future__ import annotations

import re
import statistics

import pytest

from harness.run.experiment import compose_experiment
from harness.run.lifecycle import emulated
from harness.techniques import predict
from tests.helpers import root_only

OVERRIDES = ("topology=device_edge_cloud", "network.delay_ms=5",
             "topology.links={d1-c1:{delay_ms:20},d1-e1:{delay_ms:1},e1-c1:{delay_ms:1}}")


def test_prediction_takes_the_least_delay_path() -> None:
    exp = compose_experiment(*OVERRIDES)
    base = exp.network.defaults()
    assert exp.topology.path_links("d1", "c1", base) == ["d1-e1", "e1-c1"]
    assert exp.topology.path_links("c1", "d1", base) == ["e1-c1", "d1-e1"]
    h = predict.hop(exp.topology, base, "d1", "c1", nbytes=0, hop_ms=0)
    assert h["links"] == ["d1-e1", "e1-c1"] and h["rtt_ms"] == 4.0


@pytest.mark.needs_root
@root_only
def test_probes_follow_the_path_the_prediction_assumes() -> None:
    exp = compose_experiment(*OVERRIDES)
    with emulated(exp) as emu:
        d1 = emu.nodes["d1"]
        route = d1.run(["ip", "-4", "route", "get", emu.ips["c1"]], timeout=10)
        assert f"via {emu.ips['e1']}" in route, route
        before = emu.shaper.stats()
        out = d1.run(["ping", "-c", "5", "-i", "0.2", "-W", "2", emu.ips["c1"]], timeout=20)
        after = emu.shaper.stats()
    rtts = [float(x) for x in re.findall(r"time=([\d.]+) ms", out)]
    assert len(rtts) == 5, out
    # 2 x (1 + 1) ms; the uplink would read 40, the other edge 20
    assert 3.9 <= statistics.median(rtts) <= 12, rtts

    def grew(link: str, d: str) -> int:
        return after[link][d]["fwd_frames"] - before[link][d]["fwd_frames"]

    # hop by hop: each echo request d1 -> e1 -> c1, each reply back the same way
    assert grew("d1-e1", "fwd") >= 5 and grew("e1-c1", "fwd") >= 5
    assert grew("e1-c1", "rev") >= 5 and grew("d1-e1", "rev") >= 5
    assert grew("d1-c1", "fwd") < 5 and grew("d1-c1", "rev") < 5
    assert grew("d1-e2", "fwd") < 5 and grew("e2-c1", "fwd") < 5
