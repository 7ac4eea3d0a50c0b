"""The sample library, the committed ONNX models and their cards, and the partition tool.

No root and no network needed; the cards' accuracies are recomputed with ONNX
Runtime from the committed files, so a card cannot drift from its model.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.core.config import ConfigError
from harness.pipeline.partition import extract_partition, parse_part, split_model
from harness.pipeline.sessions import load_session, providers_used
from harness.workload.samples import datasets
from models import evaluate

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "models" / "digits"
HAR = REPO / "models" / "har"
FULL = DIGITS / "full.onnx"

DIGITS_IO = {  # file: (inputs {name: shape}, outputs {name: shape}), N = dynamic batch
    "full": ({"image": ["N", 1, 32, 32]}, {"logits": ["N", 10]}),
    "head": ({"image": ["N", 1, 32, 32]}, {"h": ["N", 16, 16, 16]}),
    "middle": ({"h": ["N", 16, 16, 16]}, {"m": ["N", 32, 8, 8]}),
    "tail": ({"m": ["N", 32, 8, 8], "h": ["N", 16, 16, 16]}, {"logits": ["N", 10]}),
    "exit1": ({"h": ["N", 16, 16, 16]}, {"logits": ["N", 10]}),
    "middle_small": ({"h": ["N", 16, 16, 16]}, {"m": ["N", 32, 8, 8]}),
}
HAR_IO = {
    "acc_encoder": ({"acc": ["N", 3, 100]}, {"emb_acc": ["N", 32]}),
    "gyro_encoder": ({"gyro": ["N", 3, 100]}, {"emb_gyro": ["N", 32]}),
    "fusion": ({"emb_acc": ["N", 32], "emb_gyro": ["N", 32], "mask": ["N", 2]},
               {"logits": ["N", 4]}),
}


def card(d: Path) -> dict:
    return json.loads((d / "card.json").read_text())


def io_of(sess) -> tuple[dict, dict]:
    def shape(v):
        return [d if isinstance(d, int) else "N" for d in v.shape]
    return ({i.name: shape(i) for i in sess.get_inputs()},
            {o.name: shape(o) for o in sess.get_outputs()})


# ---------------------------------------------------------------- datasets

def test_digits_frames_deterministic_and_cameras_independent():
    a = datasets.digits_frame(7, camera=0, seed=0)
    assert a.shape == (1, 1, 32, 32) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert np.array_equal(a, datasets.digits_frame(7, camera=0, seed=0))
    b = datasets.digits_frame(7, camera=1, seed=0)
    c = datasets.digits_frame(7, camera=0, seed=1)
    assert not np.array_equal(a, b) and not np.array_equal(a, c)
    # same digit, independent noise: the frames agree far better than with another digit
    other = datasets.digits_frame(8, camera=1, seed=0)
    assert np.abs(a - b).mean() < np.abs(a - other).mean()
    batch = datasets.digits_frames([7, 8], camera=1, seed=0)
    assert np.array_equal(batch[1:], other)
    occluded = datasets.digits_frame(7, camera=0, seed=0, occlusion=1.0)
    assert (occluded == 0).sum() >= 144 and not np.array_equal(occluded, a)
    with pytest.raises(IndexError):
        datasets.digits_frame(datasets.digits_count())


def test_digits_split_disjoint_stable_and_stratified():
    train, test = datasets.digits_split()
    assert len(train) == 1258 and len(test) == 539
    assert not set(train) & set(test)
    assert sorted([*train, *test]) == list(range(datasets.digits_count()))
    again = datasets.digits_split()
    assert np.array_equal(train, again[0]) and np.array_equal(test, again[1])
    frac = np.bincount(datasets.digits_labels(test)) / np.bincount(
        datasets.digits_labels(np.arange(datasets.digits_count())))
    assert np.all(np.abs(frac - 0.3) < 0.01)
    digest = hashlib.sha256(np.asarray(test, np.int64).tobytes()).hexdigest()
    assert digest == card(DIGITS)["data"]["test_ids_sha256"]  # same split as the card's


def test_har_windows():
    train, test = datasets.har_split()
    assert list(train) == list(range(40)) and list(test) == list(range(40, 80))
    acc, gyro = datasets.har_window(41, "acc"), datasets.har_window(41, "gyro")
    assert acc.shape == gyro.shape == (1, 3, 100) and acc.dtype == np.float32
    assert not np.array_equal(acc, gyro)
    assert np.array_equal(acc, datasets.har_window(41, "acc"))
    x = np.concatenate([datasets.har_windows(train, "acc"), datasets.har_windows(train, "gyro")],
                       axis=1)  # train-split standardised
    assert np.allclose(x.mean(axis=(0, 2)), 0, atol=1e-5)
    assert np.allclose(x.std(axis=(0, 2)), 1, atol=1e-4)
    for ids in (train, test):
        assert np.bincount(datasets.har_labels(ids)).tolist() == [10, 10, 10, 10]
    assert datasets.HAR_CLASSES[datasets.har_label(0)] == "standing"
    with pytest.raises(ValueError):
        datasets.har_window(0, "magnetometer")


def test_har_parser_matches_sktime_loader():
    from sktime.datasets import load_basic_motions

    for split in ("train", "test"):
        x, y = load_basic_motions(split=split, return_type="numpy3D")
        xr, yr = datasets.load_basic_motions_raw(split)
        assert np.array_equal(np.asarray(x, np.float64), xr)
        assert [str(v).lower() for v in y] == list(yr)


# ---------------------------------------------------------------- committed models

@pytest.mark.parametrize("name", sorted(DIGITS_IO))
def test_digits_onnx_io(name):
    sess = load_session(DIGITS / f"{name}.onnx")
    assert io_of(sess) == DIGITS_IO[name]
    assert providers_used(sess) == ["CPUExecutionProvider"]
    entry = card(DIGITS)["partitions"][name]
    assert (entry["inputs"], entry["outputs"]) == DIGITS_IO[name]
    assert entry["size_bytes"] == (DIGITS / f"{name}.onnx").stat().st_size


@pytest.mark.parametrize("name", sorted(HAR_IO))
def test_har_onnx_io(name):
    assert io_of(load_session(HAR / f"{name}.onnx")) == HAR_IO[name]
    assert (card(HAR)["partitions"][name]["inputs"],
            card(HAR)["partitions"][name]["outputs"]) == HAR_IO[name]


def test_chained_partitions_equal_full_model():
    s = {n: load_session(DIGITS / f"{n}.onnx") for n in ("full", "head", "middle", "tail")}
    _, test = datasets.digits_split()
    frames = datasets.digits_frames(test[:8], camera=0, seed=0)
    full = s["full"].run(None, {"image": frames})[0]
    h = s["head"].run(None, {"image": frames})[0]
    m = s["middle"].run(None, {"h": h})[0]
    chained = s["tail"].run(None, {"m": m, "h": h})[0]
    assert chained.shape == (8, 10)
    assert np.abs(chained - full).max() <= 1e-4


def test_digits_accuracies_match_card():
    c = card(DIGITS)
    acc = evaluate.digits_accuracies(DIGITS)
    for mode, value in c["test_accuracy"].items():
        assert acc[mode] == pytest.approx(value, abs=1e-9), mode
    assert c["n_test"] == 539
    assert acc["split"] >= 0.90 and acc["skip_only"] >= 0.80


def test_har_accuracies_match_card():
    acc = evaluate.har_accuracies(HAR)
    c = card(HAR)
    for mode in ("both", "acc_only", "gyro_only"):
        assert acc[mode] == pytest.approx(c["test_accuracy"][mode], abs=1e-9), mode
    assert c["n_test"] == 40
    # the honest task workload=har replays: losing a modality costs accuracy
    honest = c["test_accuracy_axis_dropout"]
    acc = evaluate.har_accuracies(HAR, honest["axis_dropout"], honest["noise_seed"])
    for mode in ("both", "acc_only", "gyro_only"):
        assert acc[mode] == pytest.approx(honest[mode], abs=1e-9), mode
    assert acc["both"] > max(acc["acc_only"], acc["gyro_only"])


# ---------------------------------------------------------------- partition tool

PARTS = {"head": (["image"], ["h"]), "middle": (["h"], ["m"]), "tail": (["m", "h"], ["logits"])}


def test_split_model_reproduces_committed_partitions(tmp_path):
    written = split_model(FULL, PARTS, tmp_path)
    assert sorted(written) == ["head", "middle", "tail"]
    for name, path in written.items():
        assert path.read_bytes() == (DIGITS / f"{name}.onnx").read_bytes(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.onnx", "middle.onnx",
                                                         "tail.onnx"]


def test_unknown_tensor(tmp_path):
    with pytest.raises(ConfigError) as e:
        extract_partition(FULL, ["image"], ["foo"], tmp_path / "x.onnx")
    msg = str(e.value)
    assert msg.startswith("cut tensor 'foo' not found in full.onnx (known: image, logits, h, m")
    assert "\n" not in msg and not (tmp_path / "x.onnx").exists()


def test_missing_cross_cut_tensor_writes_nothing(tmp_path):
    parts = {**PARTS, "tail": (["m"], ["logits"])}
    with pytest.raises(ConfigError) as e:
        split_model(FULL, parts, tmp_path / "out")
    assert str(e.value) == ("partition 'tail' needs tensor 'h' crossing the cut; "
                            "add it to its inputs")
    assert not (tmp_path / "out").exists()  # head and middle were valid but not written


def test_output_upstream_of_inputs(tmp_path):
    with pytest.raises(ConfigError, match="output 'h' is computed before its inputs"):
        extract_partition(FULL, ["m"], ["h"], tmp_path / "x.onnx")


@pytest.mark.parametrize("content", [None, b"\x08\xff\x00garbage" * 50, b""])
def test_bad_model_file(tmp_path, content):
    path = tmp_path / "model.onnx"
    if content is not None:
        path.write_bytes(content)
    why = "no such file" if content is None else ""
    with pytest.raises(ConfigError) as e:
        extract_partition(path, ["a"], ["b"], tmp_path / "x.onnx")
    assert str(e.value).startswith(f"model={str(path)!r}: cannot read ONNX model ({why}")
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="cannot read ONNX model"):
        load_session(path)
    assert not (tmp_path / "x.onnx").exists()


def test_parse_part():
    assert parse_part("tail:m,h:logits") == ("tail", ["m", "h"], ["logits"])
    for bad in ("tail:m", "tail::logits", ":m:logits", "../x:m:logits", "a:b:c:d"):
        with pytest.raises(ConfigError):
            parse_part(bad)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.pipeline.partition", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_cli(tmp_path):
    bad = _cli(str(FULL), "--part", "tail:m:logits", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "config error: partition 'tail' needs tensor 'h' crossing the cut; add it to its inputs"]
    assert not (tmp_path / "bad").exists()
    ok = _cli(str(FULL), "--part", "head:image:h", "--part", "rest:h:logits",
              "--out", str(tmp_path / "ok"))
    assert ok.returncode == 0, ok.stderr
    assert sorted(p.name for p in (tmp_path / "ok").iterdir()) == ["head.onnx", "rest.onnx"]
