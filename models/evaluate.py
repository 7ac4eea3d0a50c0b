"""Accuracy of the exported ONNX files, with ONNX Runtime only (no torch).

The model cards are written from these functions and the tests recompute
them, so a card's numbers are those of the committed files. Every session is
pinned to one thread and every mode runs the whole test split as one batch,
so the numbers are exactly reproducible on CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.pipeline.sessions import load_session
from harness.workload.samples import datasets

MODELS = Path(__file__).resolve().parent
DIGITS_DIR = MODELS / "digits"
HAR_DIR = MODELS / "har"
DIGITS_EVAL_SEED = 0


def _run(sess, **feeds: np.ndarray) -> np.ndarray:
    return sess.run(None, feeds)[0]


def _acc(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == labels).mean())


def digits_logits(model_dir: Path = DIGITS_DIR, seed: int = DIGITS_EVAL_SEED
                  ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Test-split logits of every mode, and the labels."""
    s = {n: load_session(model_dir / f"{n}.onnx")
         for n in ("full", "head", "middle", "tail", "exit1", "middle_small")}
    _, test_ids = datasets.digits_split()
    labels = datasets.digits_labels(test_ids)
    out: dict[str, np.ndarray] = {}
    h_cam = []
    for camera in (0, 1):
        frames = datasets.digits_frames(test_ids, camera=camera, seed=seed)
        h = _run(s["head"], image=frames)
        h_cam.append(h)
        if camera == 0:
            out["full"] = _run(s["full"], image=frames)
            m = _run(s["middle"], h=h)
            out["split"] = _run(s["tail"], m=m, h=h)
            out["skip_only"] = _run(s["tail"], m=np.zeros_like(m), h=h)
            out["early_exit"] = _run(s["exit1"], h=h)
            out["small_middle"] = _run(s["tail"], m=_run(s["middle_small"], h=h), h=h)
        else:
            out["split_camera1"] = _run(s["tail"], m=_run(s["middle"], h=h), h=h)
    out["two_cameras_mean_logits"] = (out["split"] + out["split_camera1"]) / 2
    out["single_camera"] = out["split"]
    return out, labels


def digits_accuracies(model_dir: Path = DIGITS_DIR, seed: int = DIGITS_EVAL_SEED
                      ) -> dict[str, float]:
    logits, labels = digits_logits(model_dir, seed)
    modes = ("full", "split", "skip_only", "early_exit", "small_middle",
             "two_cameras_mean_logits", "single_camera")
    return {m: _acc(logits[m], labels) for m in modes}


def har_logits(model_dir: Path = HAR_DIR, axis_dropout: float = 0.0, seed: int = 0
               ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Test-split logits with both modalities, accelerometer only and gyroscope only; with
    `axis_dropout`, on the windows the sensors of workload=har send (the same draw)."""
    from harness.workload.samples.har import Har

    enc_acc = load_session(model_dir / "acc_encoder.onnx")
    enc_gyro = load_session(model_dir / "gyro_encoder.onnx")
    fusion = load_session(model_dir / "fusion.onnx")
    _, test_ids = datasets.har_split()
    labels = datasets.har_labels(test_ids)
    lib = Har(axis_dropout=axis_dropout)
    windows = {m: np.concatenate([lib.payload(int(i), k, seed)[m] for i in test_ids])
               for k, m in enumerate(("acc", "gyro"))}
    e_acc = _run(enc_acc, acc=windows["acc"])
    e_gyro = _run(enc_gyro, gyro=windows["gyro"])
    n = len(test_ids)
    out = {}
    for mode, (ma, mg) in {"both": (1, 1), "acc_only": (1, 0), "gyro_only": (0, 1)}.items():
        mask = np.tile(np.array([[ma, mg]], dtype=np.float32), (n, 1))
        out[mode] = _run(fusion, emb_acc=e_acc * ma, emb_gyro=e_gyro * mg, mask=mask)
    return out, labels


def har_accuracies(model_dir: Path = HAR_DIR, axis_dropout: float = 0.0, seed: int = 0
                   ) -> dict[str, float]:
    logits, labels = har_logits(model_dir, axis_dropout, seed)
    return {m: _acc(v, labels) for m, v in logits.items()}
