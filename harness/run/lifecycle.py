"""The emulated network's lifetime: up inside a `with`, torn down however the block exits.

Teardown runs on every exit path: normal end, exception, Ctrl-C, SIGTERM and
SIGHUP (turned into SystemExit so `finally` runs), with signals held off while
it runs (and acted on after it). A run killed with -9 is cleaned up afterwards by
`python -m harness.clean`.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

from harness.core.config import ConfigError, build_plugin, fail
from harness.emulation.backends.base import Backend
from harness.emulation.ledger import Ledger, remove_run
from harness.emulation.network import Emulation
from harness.emulation.shapers.base import Shaper
from harness.run.experiment import Experiment

log = logging.getLogger("harness")


@contextlib.contextmanager
def exit_on_signals() -> Iterator[None]:
    """SIGTERM/SIGHUP raise SystemExit in the main thread so teardown runs."""
    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP wait until the block is done (teardown must finish):
    each one that arrives is recorded and raised again once the handlers in place
    before are back, so it is acted on after the block, never lost. (Not
    pthread_sigmask: the kernel gives a process's signal to any thread not blocking
    it, and Python then runs the handler in the main thread all the same.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum: int, _frame: object) -> None:
        if signum not in pending:
            pending.append(signum)

    old = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for s in pending:  # in arrival order; a handler that raises ends the rest
            signal.raise_signal(s)


def make_shaper(exp: Experiment) -> Shaper:
    """The configured shaper; ConfigError (e.g. netem on a kernel without it) before the
    network is touched."""
    shaper = build_plugin("shaper", exp.shaper)
    if not isinstance(shaper, Shaper):
        raise ConfigError(f"shaper._target_={exp.shaper['_target_']!r}: did not return a Shaper")
    return shaper


def make_backend(exp: Experiment,
                 warnings: list[str] | None = None) -> tuple[Backend, Experiment]:
    """The configured backend, checked against the topology (ConfigError, e.g. a missing
    image or GPU runtime, before the network is touched), and the experiment as it will
    run: `exp` itself, or a copy whose topology is what the backend decided (nodes it
    runs on CPU: `Backend.validate`); `exp` is not changed. Warnings for the summary."""
    backend = build_plugin("backend", exp.backend)
    if not isinstance(backend, Backend):
        fail("backend._target_", exp.backend["_target_"], "did not return a Backend")
    topo = backend.validate(exp.topology, warnings if warnings is not None else [])
    return backend, (exp if topo is exp.topology else replace(exp, topology=topo))


@contextlib.contextmanager
def emulated(exp: Experiment, shaper: Shaper | None = None,
             backend: Backend | None = None) -> Iterator[Emulation]:
    """The experiment's network, up; torn down (signals held off) however the block exits.
    A `backend` given comes with `exp` as its `make_backend` returned it."""
    shaper = shaper or make_shaper(exp)
    if backend is None:
        backend, exp = make_backend(exp)
    ledger = Ledger.new()
    if exp.hosts.kind != "local":
        with split(exp, ledger, getattr(backend, "shared", [])) as emu:
            yield emu
        return
    emu: Emulation | None = None
    try:
        emu = Emulation(exp.topology, exp.network, backend, shaper, ledger, exp.seed)
        emu.start()
        yield emu
    finally:
        log.info("teardown of %s", ledger.prefix)
        with signals_held():
            t = time.monotonic()
            if emu is not None:
                emu.stop()
                emu.timings["teardown_s"] = time.monotonic() - t
            else:
                remove_run(ledger.prefix)


@contextlib.contextmanager
def split(exp: Experiment, ledger: Ledger, shared: list[str]) -> Iterator:
    """The network over several hosts (`harness.hosts.split`): each host's agent builds
    its share; all of it, hosts included, torn down however the block exits. The
    emulation's `hosts_part` is the summary's `hosts` and `clock`."""
    from harness.hosts.split import split_down, split_up

    session = emu = None
    try:
        session, emu, part = split_up(exp, ledger, shared)
        emu.hosts_part = part
        emu.clock_before, emu.clock_after = session.clock, None
        yield emu
        emu.clock_after = session.measure_clocks()  # the run went through: measure again
    finally:
        log.info("teardown of %s (hosts)", ledger.prefix)
        with signals_held():
            t = time.monotonic()
            try:
                if session is not None:
                    split_down(session, emu)
            finally:
                remove_run(ledger.prefix)
            if emu is not None:
                emu.timings["teardown_s"] = time.monotonic() - t
