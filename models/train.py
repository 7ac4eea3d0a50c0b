"""Train the harness's models and export them as ONNX with model cards.

    .venv/bin/python -m models.train [digits|har|all]

Everything is trained here, on CPU in a few minutes, from data shipped inside
installed packages (``harness.workload.samples.datasets``): nothing is downloaded. Seeds are
fixed; no model selection is done on the test split (fixed epochs).

digits: a 3-partition CNN (head on the device, middle on the edge, tail in
the cloud) with a skip hyperconnection from head to tail, trained with
failout (ResiliNet, arXiv 2002.07386) so the tail still classifies when the
middle (the edge) is gone; plus an early-exit classifier on the head's output
and a smaller middle replica (heterogeneous failover, FailLite-style).
``head/middle/tail.onnx`` are cut from ``full.onnx`` with
``harness.pipeline.partition.split_model``.

har: per-modality 1D-CNN encoders (accelerometer, gyroscope) and a fusion
classifier trained with modality dropout, so it works with either missing.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn
from torch.nn import functional as F

from harness.pipeline.partition import split_model
from harness.workload.samples import datasets
from models import evaluate

SEED = 0
OPSET = 17
MODELS = Path(__file__).resolve().parent

# digits hyper-parameters
D_EPOCHS = 30
D_SMALL_EPOCHS = 15
D_BATCH = 64
D_LR = 2e-3
D_FAILOUT = 0.3
D_EXIT_WEIGHT = 0.5
D_TRAIN_SEED_BASE = 1000  # noise seed of epoch e is 1000 + e (eval uses seed 0 on test ids)

# har hyper-parameters
H_EPOCHS = 300
H_LR = 3e-3
H_WEIGHT_DECAY = 1e-3
H_MODALITY_DROPOUT = 0.25
H_EMB = 32


def seed_all(seed: int = SEED) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


# ---------------------------------------------------------------- digits model

class Head(nn.Module):
    """Device: frame (N,1,32,32) -> h (N,16,16,16)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu(self.conv(x)), 2)


class Middle(nn.Module):
    """Edge: h (N,16,16,16) -> m (N,32,8,8). ``width`` < 32 gives the small replica."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(16, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 32, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(h)))), 2)


class Tail(nn.Module):
    """Cloud: (m, h) -> logits. The skip branch (pool + 1x1 conv of h) is summed with m's."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(32, 32, 3, padding=1)
        self.skip = nn.Conv2d(16, 32, 1)
        self.fc1 = nn.Linear(32 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, m: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        z = F.relu(self.conv(m)) + F.relu(self.skip(F.avg_pool2d(h, 2)))
        z = F.adaptive_avg_pool2d(z, 4).flatten(1)
        return self.fc2(F.relu(self.fc1(z)))


class Exit1(nn.Module):
    """Early exit on the device: h -> logits."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(h, 4).flatten(1))


class DigitsNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head, self.middle, self.tail, self.exit1 = Head(), Middle(), Tail(), Exit1()

    def forward(self, x: torch.Tensor, failout: float = 0.0):
        h = self.head(x)
        m = self.middle(h)
        if failout > 0:  # per sample: the edge is gone, the tail sees m = 0
            keep = (torch.rand(m.shape[0], 1, 1, 1) >= failout).to(m.dtype)
            m = m * keep
        return self.tail(m, h), self.exit1(h)


class FullExport(nn.Module):
    """image -> (logits, h, m): h and m are exported as outputs only to name them."""

    def __init__(self, net: DigitsNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor):
        h = self.net.head(image)
        m = self.net.middle(h)
        return self.net.tail(m, h), h, m


def _digits_data(ids: np.ndarray, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(datasets.digits_frames(ids, camera=0, seed=seed))
    y = torch.from_numpy(datasets.digits_labels(ids))
    return x, y


def _batches(n: int, gen: torch.Generator):
    perm = torch.randperm(n, generator=gen)
    for i in range(0, n, D_BATCH):
        yield perm[i:i + D_BATCH]


def train_digits(log) -> tuple[DigitsNet, Middle, dict]:
    seed_all()
    train_ids, _ = datasets.digits_split()
    net = DigitsNet()
    opt = torch.optim.Adam(net.parameters(), lr=D_LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, D_EPOCHS)
    gen = torch.Generator().manual_seed(SEED)
    t0 = time.time()
    for epoch in range(D_EPOCHS):
        x, y = _digits_data(train_ids, D_TRAIN_SEED_BASE + epoch)  # fresh noise every epoch
        net.train()
        tot = correct = 0
        for idx in _batches(len(y), gen):
            logits, ex = net(x[idx], failout=D_FAILOUT)
            loss = F.cross_entropy(logits, y[idx]) + D_EXIT_WEIGHT * F.cross_entropy(ex, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += len(idx)
            correct += int((logits.argmax(1) == y[idx]).sum())
        sched.step()
        if epoch % 5 == 4 or epoch == D_EPOCHS - 1:
            log(f"digits epoch {epoch + 1}/{D_EPOCHS}: train acc (with failout) "
                f"{correct / tot:.3f}  {time.time() - t0:.0f}s")
    t_main = time.time() - t0

    # Small middle replica: head and tail frozen; cross-entropy through the tail plus
    # matching the full middle's m so the tail sees what it was trained on.
    small = Middle(width=12)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(small.parameters(), lr=D_LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, D_SMALL_EPOCHS)
    t1 = time.time()
    for epoch in range(D_SMALL_EPOCHS):
        x, y = _digits_data(train_ids, D_TRAIN_SEED_BASE + D_EPOCHS + epoch)
        for idx in _batches(len(y), gen):
            with torch.no_grad():
                h = net.head(x[idx])
                m_ref = net.middle(h)
            m = small(h)
            loss = F.cross_entropy(net.tail(m, h), y[idx]) + F.mse_loss(m, m_ref)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    log(f"digits small middle: {time.time() - t1:.0f}s")
    small.eval()
    info = {"train_s": round(t_main, 1), "small_middle_train_s": round(time.time() - t1, 1)}
    return net, small, info


# ---------------------------------------------------------------- har model

class Encoder(nn.Module):
    """One modality (N,3,100) -> embedding (N,32): 1D convs, mean+max global pooling."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(3, 16, 5, padding=2)
        self.conv2 = nn.Conv1d(16, 32, 5, padding=2)
        self.fc = nn.Linear(64, H_EMB)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.relu(self.conv2(F.max_pool1d(F.relu(self.conv1(x)), 2)))
        return self.fc(torch.cat([z.mean(dim=2), z.amax(dim=2)], dim=1))


class Fusion(nn.Module):
    """(emb_acc, emb_gyro, mask) -> logits; a missing modality's embedding is zeroed."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(2 * H_EMB + 2, 32)
        self.fc2 = nn.Linear(32, len(datasets.HAR_CLASSES))

    def forward(self, emb_acc: torch.Tensor, emb_gyro: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        z = torch.cat([emb_acc * mask[:, 0:1], emb_gyro * mask[:, 1:2], mask], dim=1)
        return self.fc2(F.dropout(F.relu(self.fc1(z)), 0.2, self.training))


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random circular time shift, per-case amplitude scale and jitter (40 cases is few)."""
    n = x.shape[0]
    shifts = torch.randint(0, x.shape[2], (n,), generator=gen)
    idx = (torch.arange(x.shape[2])[None, :] + shifts[:, None]) % x.shape[2]
    x = torch.gather(x, 2, idx[:, None, :].expand_as(x))
    scale = 1 + 0.1 * torch.randn(n, 1, 1, generator=gen)
    return x * scale + 0.05 * torch.randn(x.shape, generator=gen)


def modality_mask(n: int, p: float, gen: torch.Generator) -> torch.Tensor:
    """(n, 2) 1 = present: each modality dropped with prob p, never both."""
    drop = torch.rand(n, 2, generator=gen) < p
    both = drop.all(dim=1)
    keep_acc = torch.rand(n, generator=gen) < 0.5
    drop[both, 0] = ~keep_acc[both]
    drop[both, 1] = keep_acc[both]
    return (~drop).float()


def train_har(log) -> tuple[Encoder, Encoder, Fusion, dict]:
    seed_all()
    train_ids, _ = datasets.har_split()
    xa = torch.from_numpy(datasets.har_windows(train_ids, "acc"))
    xg = torch.from_numpy(datasets.har_windows(train_ids, "gyro"))
    y = torch.from_numpy(datasets.har_labels(train_ids))
    enc_a, enc_g, fusion = Encoder(), Encoder(), Fusion()
    params = [*enc_a.parameters(), *enc_g.parameters(), *fusion.parameters()]
    opt = torch.optim.AdamW(params, lr=H_LR, weight_decay=H_WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, H_EPOCHS)
    gen = torch.Generator().manual_seed(SEED)
    t0 = time.time()
    for epoch in range(H_EPOCHS):  # full batch: 40 cases
        for mod in (enc_a, enc_g, fusion):
            mod.train()
        mask = modality_mask(len(y), H_MODALITY_DROPOUT, gen)
        ea = enc_a(_augment(xa, gen)) * mask[:, 0:1]
        eg = enc_g(_augment(xg, gen)) * mask[:, 1:2]
        logits = fusion(ea, eg, mask)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if epoch % 50 == 49 or epoch == H_EPOCHS - 1:
            acc = float((logits.argmax(1) == y).float().mean())
            log(f"har epoch {epoch + 1}/{H_EPOCHS}: loss {float(loss.detach()):.3f} "
                f"train acc {acc:.3f}")
    for mod in (enc_a, enc_g, fusion):
        mod.eval()
    return enc_a, enc_g, fusion, {"train_s": round(time.time() - t0, 1)}


# ---------------------------------------------------------------- export + cards

def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str],
            outputs: list[str]) -> None:
    """Legacy (TorchScript) exporter: needs no onnxscript; batch dimension 'N' is dynamic."""
    module.eval()
    with warnings.catch_warnings():  # "legacy exporter" deprecation: chosen on purpose
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET,
                          input_names=inputs, output_names=outputs,
                          dynamic_axes={n: {0: "N"} for n in [*inputs, *outputs]},
                          do_constant_folding=True)


def _export_full(net: DigitsNet, path: Path) -> None:
    """full.onnx: image -> logits, with the intermediate tensors named h and m.

    Exporting h and m as extra outputs makes the exporter give them those
    names; they are then dropped from the graph outputs (they stay as the
    names of the intermediate values, where the partitions are cut).
    """
    _export(FullExport(net), (torch.zeros(1, 1, 32, 32),), path, ["image"], ["logits", "h", "m"])
    model = onnx.load(str(path))
    keep = [o for o in model.graph.output if o.name == "logits"]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _dims(vi: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]


def describe(path: Path, placement: str) -> dict:
    """A partition's card entry, read from the ONNX file itself."""
    model = onnx.load(str(path))
    inits = {t.name for t in model.graph.initializer}
    n_params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    data = path.read_bytes()
    return {
        "file": path.name,
        "inputs": {i.name: _dims(i) for i in model.graph.input if i.name not in inits},
        "outputs": {o.name: _dims(o) for o in model.graph.output},
        "placement": placement,
        "size_bytes": len(data),
        "parameters": n_params,
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def _environment() -> dict:
    import onnxruntime
    import sklearn

    return {"python": platform.python_version(), "torch": torch.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "numpy": np.__version__, "scikit-learn": sklearn.__version__,
            "opset": OPSET, "exporter": "torch.onnx.export(dynamo=False)"}


def _write_json(path: Path, obj: dict) -> None:
    text = json.dumps(obj, indent=2) + "\n"
    # shapes on one line: [ "N", 1, 32, 32 ] rather than six lines
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]",
                  lambda mt: "[" + re.sub(r",\s+", ", ", mt.group(1)) + "]", text)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def build_digits(log) -> dict:
    out = MODELS / "digits"
    out.mkdir(parents=True, exist_ok=True)
    net, small, info = train_digits(log)
    net.eval()
    _export_full(net, out / "full.onnx")
    split_model(out / "full.onnx", {"head": (["image"], ["h"]), "middle": (["h"], ["m"]),
                                    "tail": (["m", "h"], ["logits"])}, out)
    h0 = torch.zeros(1, 16, 16, 16)
    _export(net.exit1, (h0,), out / "exit1.onnx", ["h"], ["logits"])
    _export(small, (h0,), out / "middle_small.onnx", ["h"], ["m"])
    acc = evaluate.digits_accuracies(out)
    middle_params = sum(p.numel() for p in net.middle.parameters())
    small_params = sum(p.numel() for p in small.parameters())
    _, test_ids = datasets.digits_split()
    train_ids, _ = datasets.digits_split()
    import sklearn

    card = {
        "name": "digits-resilinet-cnn",
        "task": "10-class digit recognition from a noisy 32x32 camera frame, split into "
                "device (head) / edge (middle) / cloud (tail) partitions with a skip "
                "hyperconnection head -> tail, an early exit on the device and a small "
                "middle replica",
        "data": {
            "source": f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__}), "
                      "1797 8x8 images, shipped with scikit-learn",
            "n_train": len(train_ids), "n_test": len(test_ids),
            "split": "stratified per class, 30 % test, numpy default_rng permutation",
            "split_seed": datasets.DIGITS_SPLIT_SEED,
            "test_ids_sha256": hashlib.sha256(np.asarray(test_ids, np.int64).tobytes())
            .hexdigest(),
            "preprocessing": {
                "scale": "pixel / 16 -> [0, 1]",
                "upscale": "8x8 -> 32x32 bilinear, half-pixel centres (align_corners=False)",
                "noise": f"additive Gaussian, sigma {datasets.DIGITS_NOISE_SIGMA}, from "
                         "numpy default_rng([seed, camera, sample_id]), then clip to [0, 1]",
                "occlusion": "none in training and evaluation (digits_frame(occlusion=0))",
                "noise_sigma": datasets.DIGITS_NOISE_SIGMA,
            },
            "train_frames": f"camera 0, noise seed {D_TRAIN_SEED_BASE} + epoch (fresh noise "
                            "every epoch)",
            "eval_frames": {"camera": 0, "seed": evaluate.DIGITS_EVAL_SEED,
                            "second_camera": 1},
        },
        "training": {
            "framework": f"PyTorch {torch.__version__} (CPU, 2 threads)", "seed": SEED,
            "epochs": D_EPOCHS, "batch_size": D_BATCH,
            "optimizer": f"Adam lr {D_LR}, cosine annealing", "failout_prob": D_FAILOUT,
            "failout": "per sample, the middle's output m replaced by zeros (ResiliNet, "
                       "arXiv 2002.07386)",
            "loss": f"CE(tail) + {D_EXIT_WEIGHT} * CE(exit1), trained jointly",
            "small_middle": f"width 12 instead of 32, {D_SMALL_EPOCHS} epochs, head and tail "
                            "frozen, loss CE(tail(small(h), h)) + MSE(small(h), middle(h))",
            "model_selection": "none (fixed epochs; the test split is used only for the card)",
            **info,
        },
        "partitions": {
            "full": describe(out / "full.onnx", "reference (whole model)"),
            "head": describe(out / "head.onnx", "device"),
            "middle": describe(out / "middle.onnx", "edge"),
            "tail": describe(out / "tail.onnx", "cloud"),
            "exit1": describe(out / "exit1.onnx", "device (early exit)"),
            "middle_small": describe(out / "middle_small.onnx", "edge (failover replica)"),
        },
        "cut": "head, middle and tail are cut from full.onnx by "
               "harness.pipeline.partition.split_model at tensors h and m; "
               "tail takes inputs (m, h)",
        "test_accuracy": acc,
        "small_middle_vs_middle": {
            "parameters": round(small_params / middle_params, 3),
            "accuracy_kept": round(acc["small_middle"] / acc["split"], 3),
        },
        "test_accuracy_notes": {
            "full": "full.onnx", "split": "head -> middle -> tail",
            "skip_only": "head -> tail with m = zeros (edge gone)",
            "early_exit": "head -> exit1", "small_middle": "head -> middle_small -> tail",
            "two_cameras_mean_logits": "mean of tail logits of camera 0 and camera 1 frames",
            "single_camera": "= split",
        },
        "n_test": len(test_ids),
        "evaluated_with": "onnxruntime CPUExecutionProvider, 1 thread, whole test split as "
                          "one batch (models/evaluate.py)",
        "environment": _environment(),
    }
    _write_json(out / "card.json", card)
    log("digits test accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in acc.items()))
    return card


def build_har(log) -> dict:
    out = MODELS / "har"
    out.mkdir(parents=True, exist_ok=True)
    enc_a, enc_g, fusion, info = train_har(log)
    x0 = torch.zeros(1, 3, 100)
    _export(enc_a, (x0,), out / "acc_encoder.onnx", ["acc"], ["emb_acc"])
    _export(enc_g, (x0,), out / "gyro_encoder.onnx", ["gyro"], ["emb_gyro"])
    e0 = torch.zeros(1, H_EMB)
    _export(fusion, (e0, e0, torch.ones(1, 2)), out / "fusion.onnx",
            ["emb_acc", "emb_gyro", "mask"], ["logits"])
    acc = evaluate.har_accuracies(out)
    train_ids, test_ids = datasets.har_split()
    card = {
        "name": "har-imu-modality-fusion",
        "task": "4-class activity recognition from a 10 s smartwatch IMU window; one encoder "
                "per modality (they can run on different devices) and a fusion classifier "
                "that tolerates a missing modality",
        "classes": datasets.HAR_CLASSES,
        "data": {
            "source": "BasicMotions (UEA/UCR archive), the .ts files shipped inside the "
                      "sktime package (sktime/datasets/data/BasicMotions), read by "
                      "harness.workload.samples.datasets",
            "n_train": len(train_ids), "n_test": len(test_ids),
            "ids": "train cases 0..39, test cases 40..79 (file order)",
            "channels": "0-2 accelerometer (acc), 3-5 gyroscope (gyro); 100 steps at 10 Hz",
            "preprocessing": "per-channel standardisation with train-split mean and std",
        },
        "training": {
            "framework": f"PyTorch {torch.__version__} (CPU, 2 threads)", "seed": SEED,
            "epochs": H_EPOCHS, "batch": "full (40 cases)",
            "optimizer": f"AdamW lr {H_LR}, weight decay {H_WEIGHT_DECAY}, cosine annealing",
            "modality_dropout": f"each modality zeroed (mask 0) with prob "
                                f"{H_MODALITY_DROPOUT}, independently, never both",
            "augmentation": "random circular time shift, amplitude scale N(1, 0.1), "
                            "jitter N(0, 0.05)",
            "model_selection": "none (fixed epochs; the test split is used only for the card)",
            **info,
        },
        "partitions": {
            "acc_encoder": describe(out / "acc_encoder.onnx", "device (accelerometer)"),
            "gyro_encoder": describe(out / "gyro_encoder.onnx", "device (gyroscope)"),
            "fusion": describe(out / "fusion.onnx", "edge or cloud"),
        },
        "missing_modality": "give its embedding as zeros and its mask column as 0",
        "test_accuracy": acc,
        "n_test": len(test_ids),
        "evaluated_with": "onnxruntime CPUExecutionProvider, 1 thread, whole test split as "
                          "one batch (models/evaluate.py)",
        "environment": _environment(),
    }
    _write_json(out / "card.json", card)
    log("har test accuracy: " + ", ".join(f"{k} {v:.4f}" for k, v in acc.items()))
    return card


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    what = argv[0] if argv else "all"
    if what not in ("digits", "har", "all") or len(argv) > 1:
        print("usage: python -m models.train [digits|har|all]", file=sys.stderr)
        return 2
    torch.set_num_threads(2)

    def log(msg: str) -> None:
        print(msg, flush=True)

    t0 = time.time()
    if what in ("digits", "all"):
        build_digits(log)
    if what in ("har", "all"):
        build_har(log)
    log(f"done in {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
