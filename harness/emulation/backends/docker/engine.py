"""The Docker daemon as the harness uses it: one client, the run's labels, and cleanup.

Containers a run creates are named `<prefix>-<node>` and labelled `hx.run=<prefix>`;
cleanup lists containers by that label and removes only those whose name also
starts with a run prefix, so a container made by hand (even from the same image)
is never touched. Registered with the cleanup registry when this module is
imported (`python -m harness.clean` imports every backend).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from typing import Any

from harness.emulation.inventory import PREFIX_RE, ResourceKind, register

LABEL_RUN = "hx.run"
LABEL_NODE = "hx.node"
SOCKET = "unix:///var/run/docker.sock"


class DockerUnavailable(RuntimeError):
    pass


@functools.cache
def client() -> Any:
    """The daemon on its standard socket; DockerUnavailable if none answers."""
    try:
        import docker
    except ImportError as e:  # pragma: no cover - a dependency of the project
        raise DockerUnavailable(f"the docker SDK is not installed ({e})") from None
    try:
        c = docker.DockerClient(base_url=SOCKET, timeout=60)
        c.ping()
    except Exception as e:
        raise DockerUnavailable(f"no Docker daemon answers at {SOCKET} "
                                f"({type(e).__name__}); `make setup` starts one") from None
    return c


def available() -> bool:
    try:
        client()
        return True
    except DockerUnavailable:
        return False


def labelled(label: str = LABEL_RUN) -> list[dict]:
    """Containers carrying `label`, as the daemon lists them (one call, no per-container
    inspect that a container removed meanwhile would fail): Id, Names, Labels, State."""
    return client().api.containers(all=True, filters={"label": label})


def run_containers(prefix: str) -> list[dict]:
    """Containers of runs whose prefix starts with `prefix` (label and name both)."""
    if not available():
        return []
    out = []
    for c in labelled():
        run = (c.get("Labels") or {}).get(LABEL_RUN, "")
        names = [n.lstrip("/") for n in c.get("Names") or []]
        if PREFIX_RE.match(run) and run.startswith(prefix) \
                and any(n.startswith(run) for n in names):
            out.append(c)
    return out


REMOVE_LOCK = "/run/hx-docker-remove.lock"


@contextlib.contextmanager
def one_removal_at_a_time() -> Iterator[None]:
    """Held around a removal, by every process of the harness on this machine (a run's
    teardown, host agents of emulated hosts sharing this daemon, harness.clean): two
    containers exiting at once can deadlock Docker 20.10's network controller for good
    (`harness.emulation.inventory.run_pids` says more)."""
    import fcntl

    with open(REMOVE_LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def remove(container: dict) -> bool:
    """Kill and remove one container (its processes and cgroups go with it). Processes
    that joined its cgroups from outside its PID namespace (the harness's launchers) must
    be gone first: the daemon waits for the cgroup to empty."""
    import docker.errors

    try:
        with one_removal_at_a_time():
            client().api.remove_container(container["Id"], force=True)
        return True
    except docker.errors.NotFound:
        return False
    except docker.errors.APIError as e:
        if "already in progress" in str(e):
            # another cleaner is on it, or a teardown killed mid-way (the daemon goes on
            # without its client): done only once the container is gone, so that clean
            # leaves nothing when it returns (kill trials found it listed right after)
            return _gone(container["Id"])
        raise


def _gone(container_id: str, timeout_s: float = 60) -> bool:
    """Wait for a removal in progress to finish; force it again if it stalls."""
    import docker.errors

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            client().api.inspect_container(container_id)
        except docker.errors.NotFound:
            return True
        time.sleep(0.1)
    try:
        with one_removal_at_a_time():
            client().api.remove_container(container_id, force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError:
        return False  # still stuck: left for the next clean, and counted as not removed
    return True


# After the run's processes (order 10: they carry the run mark, the containers' own ones
# too, so PID 1 of each container is gone and so are launchers in its cgroups), before
# namespaces, links and cgroups.
register(ResourceKind("containers", run_containers, remove, order=15,
                      label=lambda c: (c.get("Labels") or {}).get(LABEL_RUN, "")))


def describe() -> dict:
    """For the doctor: the daemon, its runtimes (a GPU one?), the harness images here
    (and whether each holds this checkout's code) and the runs' containers."""
    try:
        c = client()
    except DockerUnavailable as e:
        return {"daemon": False, "why": str(e)}
    from harness.emulation.backends.docker.images import SOURCE_LABEL, source_hash

    info = c.info()
    runtimes = sorted(info.get("Runtimes", {}))
    current = source_hash()
    images = {}
    for img in c.images.list(name="hx-*"):
        built = (img.labels or {}).get(SOURCE_LABEL)
        for tag in img.tags:
            images[tag] = {"size_mb": round(img.attrs.get("Size", 0) / 2**20),
                           "code": None if built is None else
                           ("current" if built == current else "stale: run make images")}
    return {"daemon": True, "version": info.get("ServerVersion"), "runtimes": runtimes,
            "gpu_runtime": "nvidia" in runtimes, "cgroup_driver": info.get("CgroupDriver"),
            "images": dict(sorted(images.items())),
            "run_containers": [n.lstrip("/") for x in run_containers("hx")
                               for n in x.get("Names", [])[:1]]}
