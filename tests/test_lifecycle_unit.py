"""The run's lifetime without a network: signals during teardown (no root)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from harness.run.lifecycle import exit_on_signals, signals_held


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
                         ids=lambda s: signal.Signals(s).name)
def test_a_signal_during_the_held_block_is_acted_on_after_it(sig: int) -> None:
    """Deferred, not dropped: the handler in place runs once the block is done."""
    got: list[int] = []
    handler = lambda s, _f: got.append(s)  # noqa: E731
    old = signal.signal(sig, handler)
    try:
        with signals_held():
            os.kill(os.getpid(), sig)
            time.sleep(0.05)  # an unheld signal's handler would have run by now
            assert got == []
        assert got == [sig]
        assert signal.getsignal(sig) is handler  # put back
    finally:
        signal.signal(sig, old)


def test_sigterm_during_teardown_exits_after_teardown() -> None:
    """With exit_on_signals (a run's SIGTERM is SystemExit), a SIGTERM while teardown
    holds signals exits once teardown is done, not before and not never."""
    done = []
    with pytest.raises(SystemExit) as e, exit_on_signals(), signals_held():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        done.append("teardown")
    assert done == ["teardown"] and e.value.code == 128 + signal.SIGTERM


def test_nothing_held_nothing_raised() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with signals_held():
        pass
    assert signal.getsignal(signal.SIGTERM) is before
