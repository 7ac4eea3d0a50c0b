"""Nodes as Docker containers on the harness's own links (Containernet-style).

Each container is created with `network_mode="none"` and joined to the run's
links through its network namespace, exactly as a process node is (same veth,
htb, delay line and nft path), so links behave identically on both backends.
`docker-init` holds the namespace as PID 1 (and reaps); everything the harness
starts in the node runs inside the container (`container.DockerNode.popen`). Nodes
not chosen by `containers` stay processes (a Mininet host), as Containernet mixes
hosts and Docker hosts. Limits are the container's own (`docker update` at run
time), so `docker inspect` shows what is in force.
"""

from __future__ import annotations

import sysconfig
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from harness.core.config import fail
from harness.core.paths import REPO
from harness.emulation.backends.base import Backend, EmuNode
from harness.emulation.backends.docker import engine
from harness.emulation.backends.docker.cgroups import PERIOD_US
from harness.emulation.backends.docker.container import DockerNode
from harness.emulation.inventory import ENV_MARK
from harness.emulation.ledger import Ledger
from harness.emulation.topology import ROLES, Node, Topology

# What a node's processes may do beyond an unprivileged user: SYS_NICE lets the
# sensors replay on time (SCHED_FIFO). Nothing else (no NET_ADMIN: links are set up
# from the host).
CAPS = ["SYS_NICE"]


class DockerBackend(Backend):
    name = "docker"

    def __init__(self, image: str = "hx-stage", gpu_image: str = "hx-stage-gpu",
                 gpu: str = "require", containers: str | list[str] = "all",
                 pids_limit: int = 1024, python: str = "/opt/hx/bin/python") -> None:
        self.image, self.gpu_image, self.gpu = image, gpu_image, gpu
        self.containers = containers
        self.pids_limit, self.python = pids_limit, python
        self.shared: list[str] = []
        self.prefix = ""
        self.shown: list[tuple] = []
        self.stage_images: dict[str, str] = {}
        self.nodes: dict[str, DockerNode] = {}
        self.boxed: set[str] = set()  # the nodes this backend runs as containers
        self.procs: Any = None  # the Mininet backend for nodes that stay processes

    # -- before anything changes ------------------------------------------------------

    def validate(self, topo: Topology, warnings: list[str]) -> Topology:
        if self.containers != "all":
            if not isinstance(self.containers, list) or not self.containers:
                fail("backend.containers", self.containers,
                     "'all' or a list of roles and node names")
            names = {n.name for n in topo.nodes}
            for c in self.containers:
                if c not in names and c not in ROLES:
                    fail("backend.containers", c,
                         f"no such role or node (roles: {', '.join(ROLES)})")
        if isinstance(self.pids_limit, bool) or not isinstance(self.pids_limit, int) \
                or self.pids_limit < 16:
            fail("backend.pids_limit", self.pids_limit, "must be an integer >= 16")
        if not any(self.is_container(n) for n in topo.nodes):
            return topo
        try:
            engine.client()
        except engine.DockerUnavailable as e:
            fail("backend", "docker", str(e))
        topo = super().validate(topo, warnings)
        self.image = self.resolve_image("backend.image", self.image)
        if any(n.gpus and self.is_container(n) for n in topo.nodes):
            self.gpu_image = self.resolve_image("backend.gpu_image", self.gpu_image)
        return topo

    @staticmethod
    def resolve_image(key: str, image: str) -> str:
        """The image to run, by id. A name without a tag (`hx-stage`) means the build of
        that image holding this checkout's code (several checkouts can share a daemon);
        a `name:tag` is used as is, but a harness image built from other code is refused."""
        import docker.errors

        # (imported here: build.sh runs that module as a script)
        from harness.emulation.backends.docker.images import SOURCE_LABEL, source_hash

        client, want = engine.client(), source_hash()
        if ":" not in image.rsplit("/", 1)[-1] and "@" not in image:
            found = client.images.list(name=image, filters={"label": f"{SOURCE_LABEL}={want}"})
            if not found:
                fail(key, image, "no build of it holds this checkout's code (there is no "
                     "registry): run `make images`")
            return found[0].id
        try:
            img = client.images.get(image)
        except docker.errors.ImageNotFound:
            fail(key, image, "no such image here (there is no registry: `make images` "
                 "builds hx-stage)")
        built = (img.labels or {}).get(SOURCE_LABEL)
        if built is not None and built != want:
            fail(key, image, "built from other harness code than this checkout: run "
                 "`make images`")
        return img.id

    def check_stage_images(self, stages: list, topo: Topology) -> None:
        """An image stage's node must be a container, and its image must be here."""
        self.stage_images: dict[str, str] = {}
        for i, s in enumerate(stages):
            if s.image is None:
                continue
            if not self.is_container(topo.node(s.node)):
                fail(f"pipeline.stages[{i}].node", s.node, "a stage from an image needs a "
                     "container node (see backend.containers)")
            self.stage_images[s.image] = self.resolve_image(f"pipeline.stages[{i}].image",
                                                            s.image)

    def run_image(self, node: DockerNode, key: str, image: str, command: list[str] | None,
                  env: dict[str, str]) -> Any:
        """A stage's server from its image, in `node`'s network (the pod pattern), as
        unprivileged as the node, with the node's mounts; named and labelled for cleanup."""
        holder = node.container
        return engine.client().containers.run(
            self.stage_images.get(image, image), command,
            name=f"{self.prefix}-{node.name}-{key.replace('@', '-')}",
            labels={engine.LABEL_RUN: self.prefix, engine.LABEL_NODE: node.name,
                    "hx.stage": key},
            environment={ENV_MARK: self.prefix, **env},
            network_mode=f"container:{holder.id}",
            detach=True, cap_drop=["ALL"], security_opt=["no-new-privileges"],
            pids_limit=self.pids_limit, volumes=self.mounts(), init=True,
            stop_signal="SIGKILL")

    def mounts(self) -> dict[str, dict[str, str]]:
        """The repository read-only (models, data), the run's folder read-write, and the
        host's site-packages read-only (the data sets' files), at the same paths."""
        out = {str(REPO): {"bind": str(REPO), "mode": "ro"}}
        site = sysconfig.get_paths()["purelib"]
        if not site.startswith(str(REPO) + "/"):
            out[site] = {"bind": site, "mode": "ro"}
        for path in self.shared:
            out[path] = {"bind": path, "mode": "rw"}
        return out

    def gpu_missing(self, nodes: list[Node]) -> str | None:
        nodes = [n for n in nodes if self.is_container(n)]
        if not nodes:
            return None
        runtimes = engine.client().info().get("Runtimes", {})
        if "nvidia" not in runtimes:
            return (f"Docker has no GPU runtime here (nvidia; runtimes: "
                    f"{', '.join(sorted(runtimes)) or 'none'})")
        return None

    def is_container(self, node: Node) -> bool:
        return self.containers == "all" or node.name in self.containers \
            or node.role in self.containers

    def share(self, path: str) -> None:
        self.shared.append(str(path))

    # -- nodes -------------------------------------------------------------------------

    def start_nodes(self, specs: list[Node], ips: dict[str, str],
                    ledger: Ledger) -> dict[str, EmuNode]:
        """Containers are created in parallel (the daemon does the work); process nodes
        come from a Mininet backend."""
        out: dict[str, EmuNode] = {}
        self.prefix = ledger.prefix
        procs = [s for s in specs if not self.is_container(s)]
        if procs:
            from harness.emulation.backends.mininet import MininetBackend

            self.procs = MininetBackend()
            out.update(self.procs.start_nodes(procs, ips, ledger))
        boxed = [s for s in specs if self.is_container(s)]
        self.boxed |= {s.name for s in boxed}
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = {s.name: pool.submit(self.start_node, s, ips[s.name], ledger)
                       for s in boxed}
        errors = []
        for name, f in futures.items():
            try:
                out[name] = f.result()
            except Exception as e:
                errors.append(f"{name}: {e}")
        if errors:
            raise RuntimeError("containers did not start: " + "; ".join(errors))
        return out

    def start_node(self, spec: Node, ip: str, ledger: Ledger) -> EmuNode:
        import docker.types

        image = self.gpu_image if spec.gpus else self.image
        env = {ENV_MARK: ledger.prefix, "HX_HOST_SITE": sysconfig.get_paths()["purelib"]}
        mounts = self.mounts()
        kwargs: dict[str, Any] = {}
        if spec.gpus:
            kwargs["device_requests"] = [docker.types.DeviceRequest(
                count=-1 if spec.gpus == "all" else int(spec.gpus), capabilities=[["gpu"]])]
        if spec.mem_mb:
            kwargs["mem_limit"] = kwargs["memswap_limit"] = f"{spec.mem_mb}m"
        if spec.cpu:
            kwargs["cpu_period"], kwargs["cpu_quota"] = PERIOD_US, int(spec.cpu * PERIOD_US)
        container = engine.client().containers.run(
            image, ["sleep", "infinity"], name=f"{ledger.prefix}-{spec.name}",
            hostname=spec.name, labels={engine.LABEL_RUN: ledger.prefix,
                                        engine.LABEL_NODE: spec.name},
            environment=env, network_mode="none", init=True, detach=True,
            cap_drop=["ALL"], cap_add=CAPS, security_opt=["no-new-privileges"],
            pids_limit=self.pids_limit, volumes=mounts, working_dir=str(REPO),
            stop_signal="SIGKILL", **kwargs)
        img_env = dict(e.split("=", 1) for e in container.image.attrs["Config"].get("Env", []))
        node = DockerNode(container, ip, {**img_env, **env, "HOME": "/root"}, CAPS,
                          self.python, str(REPO), self.run_image)
        self.nodes[spec.name] = node
        return node

    def show_link(self, a: str, a_dev: str, b: str, b_dev: str, ip: dict[str, str]) -> None:
        """Links, remembered for the CLI (built only if it is asked for)."""
        self.shown.append((a, a_dev, b, b_dev, ip))

    def cli(self) -> None:
        """Mininet's CLI over every node: container nodes get a shell in their container;
        process nodes are the Mininet hosts they already are."""
        from harness.emulation.backends.docker.shell import ContainerHost
        from harness.emulation.backends.mininet import MininetBackend, MininetNode

        if self.procs is None:
            self.procs = MininetBackend()
        for name, node in self.nodes.items():
            host = self.procs.net.addHost(name, cls=ContainerHost, node=node, ip=None)
            self.procs.nodes[name] = MininetNode(host, node.ip, node.resources)
        for link in self.shown:
            self.procs.show_link(*link)
        self.procs.cli()

    def run_started(self) -> None:
        if self.procs is not None:
            self.procs.run_started()

    def helpers(self) -> dict[str, list[int]]:
        """Those of the nodes that stay processes (their zygote)."""
        return self.procs.helpers() if self.procs is not None else {}

    def stop(self) -> None:
        """Kill every node's processes (launchers outside a container's PID namespace
        would keep its cgroup busy), then remove the containers of this backend's nodes
        (a host's share: emulated hosts share one daemon) one at a time (~0.2 s each):
        two containers exiting at once can deadlock Docker 20.10's network controller
        for good (`harness.emulation.inventory.run_pids` says more)."""
        try:
            if self.procs is not None:
                self.procs.stop()
        finally:
            for node in self.nodes.values():
                node.kill_all()
            mine = engine.run_containers(self.prefix) if self.prefix else []
            for c in [c for c in mine if (c.get("Labels") or {}).get(engine.LABEL_NODE)
                      in self.boxed]:
                engine.remove(c)
            self.nodes.clear()
