"""The stage processes of one run: the instances a technique made of the plan
(instances.py), started on their nodes.

`Deployment` starts them, waits until they serve, restarts them when a crashed node
powers up, and reads what they recorded.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from harness.pipeline.config import PipelineConfig, StageSpec, resolve
from harness.pipeline.instances import Instance

# Where an image stage's own server listens, in its node's network namespace: reached by
# the stage in front of it and by nothing over the emulated links.
IMAGE_HOST = "127.0.0.1"


RESTARTED = "--- restarted"  # starts a stage log's line between two instances' output


def open_log(path: Path):
    """An instance's log, appended to: a restarted instance (a node's reboot) keeps the
    crashed one's lines, which say why it failed, and begins after a RESTARTED line."""
    log = open(path, "a")
    if log.tell():
        log.write(f"{RESTARTED}: a new instance from here (t={time.monotonic():.3f})\n")
        log.flush()
    return log


class EventFiles:
    """The stages' `*.events.jsonl` files, read incrementally: every complete line once,
    whichever file it was appended to (several files grow at once)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.offsets: dict[Path, int] = {}

    def read_new(self) -> list[dict]:
        out = []
        for f in sorted(self.folder.glob("*.events.jsonl")):
            with open(f, "rb") as fh:
                fh.seek(self.offsets.get(f, 0))
                data = fh.read()
            end = data.rfind(b"\n") + 1  # a line still being written waits for next time
            self.offsets[f] = self.offsets.get(f, 0) + end
            for line in data[:end].splitlines():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out


class Deployment:
    """The stage processes of one run."""

    def __init__(self, emu, pipe: PipelineConfig, run_dir: Path, record) -> None:
        self.emu, self.pipe, self.run_dir, self.record = emu, pipe, run_dir, record
        self.parts_dir = run_dir / "partitions"
        self.dir = run_dir / "stages"
        self.procs: dict[str, object] = {}
        self.info: dict[str, dict] = {}
        self.instances: dict[str, Instance] = {}

    def prepare(self) -> dict[str, Path]:
        """Cut the partitions (files only; no network)."""
        from harness.pipeline.partition import split_model

        cut = {s.name: (s.inputs, s.outputs) for s in self.pipe.stages if s.model is None}
        files = {}
        if cut:
            self.parts_dir.mkdir(parents=True, exist_ok=True)
            files.update(split_model(resolve(self.pipe.model_file, "pipeline.model_file"),
                                     cut, self.parts_dir))
        for s in self.pipe.stages:
            if s.model is not None:
                files[s.name] = resolve(s.model, "pipeline.stages.model")
        self.files = {k: Path(v) for k, v in files.items()}
        return self.files

    def spec(self, stage: str) -> StageSpec:
        """The stage's config; a technique's own stage (fusion) runs with the defaults."""
        return next((s for s in self.pipe.stages if s.name == stage),
                    StageSpec(stage, "", ["x"], ["x"]))

    def port_for(self, node: str) -> int:
        """A free stage port on `node`: the pipeline's port, then the next ones."""
        used = {i.port for i in self.instances.values() if i.node == node}
        port = self.pipe.port
        while port in used:
            port += 1
        return port

    def launch(self, inst: Instance) -> None:
        """Start one stage process (does not wait for it)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        spec = self.spec(inst.stage)
        if inst.port is None and inst.key not in self.instances:
            inst.port = self.port_for(inst.node)
        node = self.emu.nodes[inst.node]
        if spec.image is not None:  # its server in a container of the node, this stage in front
            # {host}: loopback, as only this stage, in the same network namespace, calls it
            fill = {"{port}": str(spec.image_port), "{name}": inst.stage,
                    "{model}": str(inst.model_file), "{host}": IMAGE_HOST}

            def filled(s: str) -> str:
                for k, v in fill.items():
                    s = s.replace(k, v)
                return s

            node.start_image(inst.key, spec.image,
                             [filled(a) for a in spec.command] if spec.command else None,
                             {k: filled(v) for k, v in spec.env.items()})
            what = ["--upstream", f"{IMAGE_HOST}:{spec.image_port}"]
        elif inst.model_file is not None:
            what = ["--model", str(inst.model_file)]
        else:
            what = ["--null", inst.null or "x"]
        argv = [node.python, "-m", "harness.pipeline.node.server",
                *what, *inst.args,
                "--name", inst.stage, "--node", inst.node,
                "--host", self.emu.ips[inst.node], "--port", str(inst.port),
                "--threads", str(spec.threads),
                "--providers", ",".join(self.requested_providers(inst)),
                "--ready-file", str(self.dir / f"{inst.key}.json"),
                "--events", str(self.dir / f"{inst.key}.events.jsonl")]
        if inst.route is not None:
            argv += ["--route", json.dumps(inst.route.to_json())]
        if self.pipe.hop == "lean":
            argv += ["--lean"]
        log = open_log(self.dir / f"{inst.key}.log")
        self.instances[inst.key] = inst
        self.info[inst.key] = {"t_spawn": time.monotonic()}
        self.procs[inst.key] = self.emu.nodes[inst.node].popen(argv, stdout=log, stderr=log)

    def wait_ready(self, inst: Instance, timeout_s: float | None = None) -> dict:
        f = self.dir / f"{inst.key}.json"
        deadline = time.monotonic() + (timeout_s or self.pipe.ready_timeout_s)
        while not f.exists():
            proc = self.procs[inst.key]
            if proc.poll() is not None:
                lines = (self.dir / f"{inst.key}.log").read_text().splitlines()
                mark = max((i for i, x in enumerate(lines) if x.startswith(RESTARTED)),
                           default=-1)  # this instance's lines only
                err = [x for x in lines[mark + 1:] if x.strip()]
                why = err[-1] if err else ""
                if proc.returncode == -9 and self.emu.nodes[inst.node].resources.oom_kills():
                    why = (f"killed by the OOM killer (memory limit "
                           f"{self.emu.topo.node(inst.node).mem_mb} MiB)")
                raise RuntimeError(f"stage {inst.stage} on {inst.node} exited "
                                   f"({proc.returncode}): {why}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"stage {inst.stage} on {inst.node} not ready after "
                                   f"{self.pipe.ready_timeout_s}s")
            time.sleep(0.005)
        self.info[inst.key].update(json.loads(f.read_text()), node=inst.node)
        self.record("stage.ready", inst.node, {"stage": inst.stage, **self.info[inst.key]})
        return self.info[inst.key]

    def start(self, instances: list[Instance]) -> None:
        """Start every instance to start now, and wait until all serve."""
        now = [i for i in instances if i.start]
        for inst in now:
            self.launch(inst)
        for inst in now:
            self.wait_ready(inst)

    def reboot(self, node: str) -> None:
        """A crashed node is back: start its stages again (ready in the background)."""
        import threading

        for inst in [i for i in self.instances.values() if i.node == node]:
            proc = self.procs.get(inst.key)
            if proc is not None and proc.poll() is None:
                continue
            (self.dir / f"{inst.key}.json").unlink(missing_ok=True)
            self.launch(inst)
            threading.Thread(target=self._ready_quietly, args=(inst,), daemon=True).start()

    def _ready_quietly(self, inst: Instance) -> None:
        try:
            self.wait_ready(inst)
        except RuntimeError as e:
            self.record("stage.error", inst.node, {"stage": inst.stage, "error": str(e)})

    def requested_providers(self, inst: Instance) -> list[str]:
        return self.spec(inst.stage).providers or self.emu.topo.node(inst.node).providers

    def provider_fallbacks(self) -> list[str]:
        """Instances whose first-choice execution provider is not in use: ONNX Runtime
        falls back to CPU silently, so the run says so (and is not VALID)."""
        out = []
        for key, used in self.providers().items():
            if not used or self.spec(self.instances[key].stage).image is not None:
                continue  # no session (a null stage), or a foreign server's own business
            want = self.requested_providers(self.instances[key])[0]
            if want not in used:
                out.append(f"stage {key} asked for {want} but runs on {', '.join(used)}")
        return out

    def providers(self) -> dict[str, list[str]]:
        return {k: i.get("providers", []) for k, i in self.info.items() if "providers" in i}

    def technique_events(self) -> list[dict]:
        """Health transitions etc. the stages recorded (monotonic `t`), all of them."""
        return EventFiles(self.dir).read_new()

    def event_reader(self) -> EventFiles:
        """For following the stages' events as they are written (each returned once)."""
        return EventFiles(self.dir)

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds used so far by each node hosting a stage (its resources: cgroup)."""
        nodes = {i.node for i in self.instances.values()}
        return {n: self.emu.nodes[n].resources.cpu_usage_s() for n in sorted(nodes)}

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
            p.wait()
        self.procs.clear()
