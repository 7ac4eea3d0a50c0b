"""Tests of harness.emulation.shapers.delayline without namespaces: pure helpers, the
control protocol (the host's messages are the line's) and the process
(test_delayline_live.py: in real namespaces)."""

from __future__ import annotations

import random
import signal
import statistics
import subprocess
import sys
from typing import Any

import pytest

from harness.emulation.shapers.delayline.line import is_lost, sample_delay_ms
from harness.emulation.shapers.delayline.protocol import DirProps, parse_command, parse_props
from tests.delayline_proc import REPO, Proc

# ---------------------------------------------------------------- pure helpers


def test_parse_props_defaults_and_update() -> None:
    assert parse_props({}) == DirProps(0.0, 0.0, 0.0, True)
    base = DirProps(delay_ms=10, jitter_ms=1, loss_pct=2)
    p = parse_props({"loss_pct": 5, "up": False}, base)
    assert p == DirProps(10, 1, 5, False)
    assert isinstance(parse_props({"delay_ms": 3}).delay_ms, float)


@pytest.mark.parametrize(
    "bad",
    [
        {"delay_ms": -1},
        {"jitter_ms": "2"},
        {"loss_pct": 101},
        {"loss_pct": float("nan")},
        {"delay_ms": float("inf")},
        {"delay_ms": True},
        {"up": 1},
        {"rate": 5},
        [1],
    ],
)
def test_parse_props_rejects(bad: Any) -> None:
    with pytest.raises(ValueError):
        parse_props(bad)


def test_parse_command() -> None:
    assert parse_command('{"op": "stats"}') == {"op": "stats"}
    assert parse_command(b'{"op": "set", "link": "l0", "dir": "rev"}')["dir"] == "rev"
    add = parse_command('{"op": "add", "link": "l0", "a": "x", "b": "y", "seed": 3}')
    assert add["seed"] == 3
    many = parse_command('{"op": "add_many", "links": [{"link": "l0", "a": "x", "b": "y"}]}')
    assert many["links"][0]["a"] == "x"
    with pytest.raises(ValueError, match=r"links\[1\]: a must be"):
        parse_command('{"op": "add_many", "links": [{"link": "l0", "a": "x", "b": "y"}, '
                      '{"link": "l1", "b": "y"}]}')
    for bad in (
        "not json",
        "[]",
        '{"op": "nope"}',
        '{"op": "set", "dir": "both"}',
        '{"op": "set", "link": "l0", "dir": "up"}',
        '{"op": "add", "link": "l0", "a": "x", "b": "x"}',
        '{"op": "add", "link": "l0", "a": "x"}',
        '{"op": "add", "link": "l0", "a": "x", "b": "y", "seed": 1.5}',
        '{"op": "add_many", "links": []}',
        '{"op": "add_many", "links": {"link": "l0", "a": "x", "b": "y"}}',
        '{"op": "add_many", "links": [{"link": "l0", "a": "x", "b": "y"}, {"link": "l1"}]}',
    ):
        with pytest.raises(ValueError):
            parse_command(bad)


def test_the_hosts_messages_are_the_lines() -> None:
    """The userspace shaper builds every message with the line's protocol module: what it
    sends parses as the line parses it, props and all."""
    from harness.core.config import LinkProps
    from harness.emulation.shapers.delayline import protocol
    from harness.emulation.shapers.userspace import _props
    from harness.emulation.tc import DirState

    fwd = _props(DirState(LinkProps(10, 5, 1, 2, 100)))
    rev = _props(DirState(LinkProps(0, None, None, None, None), up=False))
    assert (fwd, rev) == (DirProps(5, 1, 2, True), DirProps(0, 0, 0, False))
    many = parse_command(protocol.encode(protocol.add_many(
        [protocol.link_spec("l0", "x", "y", 3, fwd, rev)])))
    assert parse_props(many["links"][0]["fwd"]) == fwd
    assert parse_props(many["links"][0]["rev"]) == rev
    st = parse_command(protocol.encode(protocol.set_props("l0", "rev", rev)))
    assert parse_props({k: v for k, v in st.items() if k not in ("op", "link", "dir")}) == rev
    for op in ("stats", "quit"):
        assert parse_command(protocol.encode(protocol.command(op))) == {"op": op}
    with pytest.raises(ValueError):
        protocol.command("nope")


def test_the_process_loads_only_its_own_package() -> None:
    """The line runs in the wire namespace: its process (`python -m`, as the shaper starts
    it) imports nothing of the harness but its own package and the packages above it."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-m",
                          "harness.emulation.shapers.delayline", "--help"],
                         capture_output=True, text=True, check=True, cwd=REPO).stderr
    loaded = {line.rsplit("|", 1)[1].strip() for line in err.splitlines()
              if line.startswith("import time:") and "|" in line}
    pkg = "harness.emulation.shapers.delayline"
    assert {m for m in loaded if m.split(".")[0] == "harness"} == {
        "harness", "harness.emulation", "harness.emulation.shapers", pkg, f"{pkg}.line",
        f"{pkg}.protocol"}


def test_sample_delay() -> None:
    rng = random.Random(1)
    assert sample_delay_ms(rng, 10.0, 0.0) == 10.0
    xs = [sample_delay_ms(rng, 10.0, 4.0) for _ in range(20000)]
    assert min(xs) >= 6.0 and max(xs) <= 14.0
    assert abs(statistics.mean(xs) - 10.0) < 0.1
    assert abs(statistics.pstdev(xs) - 4.0 / 3**0.5) < 0.05  # uniform: width / sqrt(12)
    clamped = [sample_delay_ms(rng, 1.0, 5.0) for _ in range(1000)]
    assert min(clamped) == 0.0 and max(clamped) <= 6.0
    # Reproducible for the same seed.
    a, b = random.Random("7/fwd"), random.Random("7/fwd")
    assert [sample_delay_ms(a, 5, 2) for _ in range(5)] == [
        sample_delay_ms(b, 5, 2) for _ in range(5)
    ]


def test_is_lost() -> None:
    rng = random.Random(2)
    assert not any(is_lost(rng, 0.0) for _ in range(1000))
    assert all(is_lost(rng, 100.0) for _ in range(1000))
    frac = sum(is_lost(rng, 5.0) for _ in range(100000)) / 100000
    assert 0.045 < frac < 0.055


# ------------------------------------------------------ the process, no root


def test_protocol_errors_quit_eof_sigterm() -> None:
    proc = Proc([sys.executable, "-m", "harness.emulation.shapers.delayline"])
    try:
        assert proc.cmd({"op": "stats"}) == {"ok": True, "links": {}}
        for bad in (
            "garbage",
            {"op": "set", "link": "nope", "delay_ms": 1},
            {"op": "add", "link": "l0", "a": "nonexistent0", "b": "nonexistent1"},
            {"op": "add_many", "links": [{"link": "l0", "a": "nonexistent0", "b": "n1"}]},
        ):
            r = proc.cmd(bad)
            assert r["ok"] is False and "\n" not in r["error"], r
        assert proc.cmd({"op": "stats"}) == {"ok": True, "links": {}}  # a failed add adds none
        assert proc.cmd({"op": "quit"}) == {"ok": True}
        assert proc.p.wait(5) == 0
        assert proc.p.stdout is not None and proc.p.stdout.read() == b""  # nothing else printed
    finally:
        proc.stop()
    proc = Proc([sys.executable, "-m", "harness.emulation.shapers.delayline"])
    assert proc.p.stdin is not None
    proc.p.stdin.close()  # parent died
    assert proc.p.wait(5) == 0
    proc = Proc([sys.executable, "-m", "harness.emulation.shapers.delayline"])
    proc.p.send_signal(signal.SIGTERM)
    assert proc.p.wait(5) == 0
