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
    feed = {}
    for name, (dt, shape) in runner.inputs.items():
        feed[name] = np.zeros([d if d > 0 else 1 for d in shape], dtype=V2_TO_NP[dt])
    runner.run(feed)

