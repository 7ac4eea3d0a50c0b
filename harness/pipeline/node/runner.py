"""The model a stage serves: an ONNX Runtime session (or identity) behind one interface."""

from __future__ import annotations

import numpy as np

from harness.pipeline.codec import NP_TO_V2, ORT_TO_NP, V2_TO_NP


class Runner:
    """ONNX Runtime session (or, for the null stage, identity) behind one interface."""

    def __init__(self, model_path: str | None, providers: list[str] | None, threads: int,
                 null_io: list[str] | None = None) -> None:
        self.session = None
        if model_path is None:
            names = null_io or ["x"]
            self.inputs = {n: ("FP32", [-1]) for n in names}
            self.outputs = dict(self.inputs)
            self.providers: list[str] = []
            return
        from harness.pipeline.sessions import load_session, providers_used

        self.session = load_session(model_path, providers, threads)
        self.providers = providers_used(self.session)
        self.inputs = {i.name: (NP_TO_V2[np.dtype(ORT_TO_NP[i.type])], _dims(i.shape))
                       for i in self.session.get_inputs()}
        self.outputs = {o.name: (NP_TO_V2[np.dtype(ORT_TO_NP[o.type])], _dims(o.shape))
                        for o in self.session.get_outputs()}

    def zeros(self, name: str, batch: int | None = None) -> np.ndarray:
        """Zeros shaped and typed as input `name` takes them (a dynamic dimension as 1;
        `batch` for the first)."""
        dt, shape = self.inputs[name]
        dims = [d if d > 0 else 1 for d in shape]
        if batch is not None and dims:
            dims[0] = batch
        return np.zeros(dims, dtype=V2_TO_NP[dt])

    def run(self, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self.inputs if n not in tensors]
        if missing:
            raise KeyError(f"missing input tensor(s) {missing}")
        if self.session is None:
            return {n: tensors[n] for n in self.inputs}
        feed = {n: tensors[n] for n in self.inputs}
        return dict(zip(self.outputs, self.session.run(list(self.outputs), feed), strict=True))


def _dims(shape: list) -> list[int]:
    return [d if isinstance(d, int) else -1 for d in shape]


def first_inference(runner: Runner) -> None:
    """One inference on zeros before serving: the cold-start cost, paid before ready."""
    if runner.session is None:
        return
    runner.run({name: runner.zeros(name) for name in runner.inputs})



class UpstreamRunner(Runner):
    """The model is another KServe v2 server in the same node (a stage from a container
    image): this stage forwards each request to it over loopback and keeps doing what
    every stage does (routing, the `path`, health checks), so techniques and faults treat
    it like any stage. Construction waits for its ServerReady and ModelReady."""

    def __init__(self, target: str, model: str, timeout_s: float = 60.0) -> None:
        import time

        import grpc
        from tritonclient.grpc import service_pb2 as pb
        from tritonclient.grpc import service_pb2_grpc as pb_grpc

        from harness.pipeline.client import GRPC_OPTIONS

        self.session, self.model, self.pb = None, model, pb
        self.stub = pb_grpc.GRPCInferenceServiceStub(
            grpc.insecure_channel(target, options=GRPC_OPTIONS))
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self.stub.ServerReady(pb.ServerReadyRequest(), timeout=1).ready and \
                        self.stub.ModelReady(pb.ModelReadyRequest(name=model), timeout=1).ready:
                    break
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"upstream {target} model {model!r} not ready after "
                                   f"{timeout_s:g}s")
            time.sleep(0.05)
        meta = self.stub.ModelMetadata(pb.ModelMetadataRequest(name=model), timeout=5)
        server = self.stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=5)
        self.inputs = {t.name: (t.datatype, list(t.shape)) for t in meta.inputs}
        self.outputs = {t.name: (t.datatype, list(t.shape)) for t in meta.outputs}
        self.providers = []
        self.metadata = {"target": target, "server": server.name, "version": server.version,
                         "model": meta.name, "platform": meta.platform,
                         "versions": list(meta.versions), "inputs": self.inputs,
                         "outputs": self.outputs}

    def run(self, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from harness.pipeline.codec import decode_outputs, infer_request

        missing = [n for n in self.inputs if n not in tensors]
        if missing:
            raise KeyError(f"missing input tensor(s) {missing}")
        req = infer_request(self.model, {n: tensors[n] for n in self.inputs})
        return decode_outputs(self.stub.ModelInfer(req, timeout=30))
