"""Tensors on the wire: KServe v2 / Open Inference Protocol messages <-> numpy arrays.

Shared by every side that speaks the protocol (stages, sensors, the overhead
bench, tests); uses the stubs `tritonclient[grpc]` ships (no hand-written proto).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tritonclient.grpc import service_pb2 as pb

NP_TO_V2 = {np.dtype("float32"): "FP32", np.dtype("float64"): "FP64",
            np.dtype("int64"): "INT64", np.dtype("int32"): "INT32",
            np.dtype("uint8"): "UINT8", np.dtype("bool"): "BOOL", np.dtype("float16"): "FP16"}
V2_TO_NP = {v: k for k, v in NP_TO_V2.items()}
ORT_TO_NP = {"tensor(float)": np.float32, "tensor(double)": np.float64,
             "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
             "tensor(bool)": np.bool_, "tensor(float16)": np.float16}


def decode_inputs(req: pb.ModelInferRequest) -> dict[str, np.ndarray]:
    """Tensors of a request, from raw_input_contents (or typed contents)."""
    out = {}
    for i, t in enumerate(req.inputs):
        if t.datatype not in V2_TO_NP:
            raise ValueError(f"input {t.name}: unsupported datatype {t.datatype}")
        dt = V2_TO_NP[t.datatype]
        if i < len(req.raw_input_contents):
            arr = np.frombuffer(req.raw_input_contents[i], dtype=dt)
        else:
            c = t.contents
            vals = {"FP32": c.fp32_contents, "FP64": c.fp64_contents,
                    "INT64": c.int64_contents, "INT32": c.int_contents,
                    "UINT8": c.uint_contents, "BOOL": c.bool_contents}.get(t.datatype, [])
            arr = np.asarray(list(vals), dtype=dt)
        out[t.name] = arr.reshape(tuple(t.shape))
    return out


def encode(msg: pb.ModelInferRequest | pb.ModelInferResponse, tensors: dict[str, np.ndarray],
           field_name: str) -> None:
    """Append tensors as raw contents to a request (inputs) or response (outputs)."""
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        t = getattr(msg, field_name).add()
        t.name = name
        t.datatype = NP_TO_V2[arr.dtype]
        t.shape.extend(arr.shape)
        raw = msg.raw_input_contents if field_name == "inputs" else msg.raw_output_contents
        raw.append(arr.tobytes())


def infer_request(model: str, tensors: dict[str, np.ndarray], request_id: str = "",
                  params: dict[str, Any] | None = None) -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name=model, id=request_id)
    for k, v in (params or {}).items():
        set_param(req.parameters[k], v)
    encode(req, tensors, "inputs")
    return req


def set_param(p: pb.InferParameter, v: Any) -> None:
    if isinstance(v, bool):
        p.bool_param = v
    elif isinstance(v, int):
        p.int64_param = v
    elif isinstance(v, float):
        p.double_param = v
    else:
        p.string_param = str(v)


def decode_outputs(resp: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    out = {}
    for i, t in enumerate(resp.outputs):
        arr = np.frombuffer(resp.raw_output_contents[i], dtype=V2_TO_NP[t.datatype])
        out[t.name] = arr.reshape(tuple(t.shape))
    return out

