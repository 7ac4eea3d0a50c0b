"""What the Docker tests share: the client (a failure, not a skip, without Docker), the
run's containers, and a watcher that records every container's limits while a run goes."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import pytest

DOCKER = ("backend=docker",)


def docker_client():
    from harness.emulation.backends.docker import engine

    try:
        return engine.client()
    except engine.DockerUnavailable as e:
        pytest.fail(f"{e} (make setup / make images installs and starts Docker)")


def containers(prefix: str = "hx") -> list[str]:
    """Names of containers carrying the run label whose run starts with `prefix`."""
    from harness.emulation.backends.docker import engine

    docker_client()
    return sorted(c["Names"][0].lstrip("/") for c in engine.labelled()
                  if c["Labels"]["hx.run"].startswith(prefix))


def watch_containers(stop: threading.Event, seen: dict) -> None:
    """While a run goes: every container of a run, with its limits, as docker shows them."""
    import docker.errors

    from harness.emulation.backends.docker import engine

    api = docker_client().api
    while not stop.is_set():
        for c in engine.labelled():
            try:
                a = api.inspect_container(c["Id"])
            except docker.errors.NotFound:  # removed meanwhile
                continue
            if not a["State"]["Running"]:
                continue
            hc = a["HostConfig"]
            seen.setdefault(a["Name"].lstrip("/"), set()).add(
                (a["Config"]["Labels"].get("hx.node"), hc["CpuQuota"], hc["CpuPeriod"],
                 hc["Memory"], hc["MemorySwap"], hc["PidsLimit"], hc["NetworkMode"]))
        time.sleep(0.2)


@contextlib.contextmanager
def watching() -> Iterator[dict]:
    """Within the block, what `watch_containers` sees (container name -> states)."""
    stop, seen = threading.Event(), {}
    t = threading.Thread(target=watch_containers, args=(stop, seen), daemon=True)
    t.start()
    try:
        yield seen
    finally:
        stop.set()
        t.join()
