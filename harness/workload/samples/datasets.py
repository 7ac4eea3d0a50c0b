"""The data sets behind the sample libraries (`samples/`): deterministic sensor data.

Two data sets that ship inside installed packages (nothing is downloaded):

``digits`` (camera frames)
    sklearn's ``load_digits`` (1797 grey 8x8 images, 10 classes). A frame for
    ``(sample_id, camera, seed)`` is the image scaled to [0, 1], upscaled to
    32x32 with bilinear interpolation (half-pixel centres, like
    ``torch.nn.functional.interpolate(..., align_corners=False)``), plus
    independent Gaussian noise (sigma ``DIGITS_NOISE_SIGMA`` = 0.15), optionally
    an occluding square, then clipped to [0, 1] (a sensor saturates). The noise
    comes from ``numpy.random.default_rng([seed, camera, sample_id])``, so two
    cameras see the same digit with independent noise, and every frame is
    reproducible. Ids are the row numbers of ``load_digits`` (0..1796); the
    split is stratified, 70/30, seed 0 (``digits_split``).

``har`` (IMU windows)
    BasicMotions (40 train + 40 test cases, 6 channels x 100 steps at 10 Hz,
    4 classes), the data file shipped with sktime. One id space: train cases
    are ids 0..39 and test cases 40..79, in file order. sktime names the
    channels only ``dim_0``..``dim_5``; its docs and the file header say just
    "3D accelerometer and a 3D gyroscope". We take channels 0-2 as the
    accelerometer and 3-5 as the gyroscope, the usual reading of the data set,
    which the data support: channels 3-5 have a mean of about 0 in every class
    (an angular rate averaged over a recording), channels 0-2 do not (running:
    4.8, -4.5, -2.3). Each channel is standardised with the mean and standard
    deviation of the train split (recomputed deterministically on load).

The files are parsed directly (the BasicMotions ``.ts`` file is located in the
installed sktime package without importing sktime, which takes ~1.5 s), and the
result is cached in module globals. No torch here: the load generator and the
tests use this module without the training stack.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

DIGITS_SIZE = 32
DIGITS_NOISE_SIGMA = 0.15
DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.3
DIGITS_OCCLUSION_SIZE = 12

HAR_CLASSES = ["standing", "running", "walking", "badminton"]  # order of the .ts header
HAR_CHANNELS = {"acc": (0, 1, 2), "gyro": (3, 4, 5)}
HAR_N_TRAIN = 40
HAR_N_TEST = 40
HAR_LENGTH = 100

_digits: tuple[np.ndarray, np.ndarray] | None = None  # images (N, 8, 8) in [0, 1], labels
_digits_split: tuple[np.ndarray, np.ndarray] | None = None
_har: tuple[np.ndarray, np.ndarray] | None = None  # normalised (80, 6, 100) float32, labels
_upscale: np.ndarray | None = None


# ---------------------------------------------------------------- digits

def package_dir(name: str) -> Path | None:
    """Where an installed package's files are, without importing it. In a container
    node the host's site-packages are mounted read-only and named by HX_HOST_SITE (the
    stage image carries no data sets)."""
    spec = importlib.util.find_spec(name)
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    host = os.environ.get("HX_HOST_SITE")
    if host and (Path(host) / name).is_dir():
        return Path(host) / name
    return None


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's digits, read from its file as `sklearn.datasets.load_digits` does (no
    sklearn import: it is slow, and absent in the stage image)."""
    global _digits
    if _digits is None:
        root = package_dir("sklearn")
        path = root / "datasets" / "data" / "digits.csv.gz" if root else None
        if path is None or not path.is_file():
            raise FileNotFoundError("sklearn's digits.csv.gz (install scikit-learn)")
        data = np.loadtxt(path, delimiter=",")
        images = (data[:, :-1].reshape(-1, 8, 8) / 16.0).astype(np.float64)
        _digits = images, data[:, -1].astype(np.int64)
    return _digits


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) interpolation weights, half-pixel centres, edges clamped."""
    src = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    src = np.clip(src, 0, n_in - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    w = np.zeros((n_out, n_in))
    w[np.arange(n_out), lo] += 1 - frac
    w[np.arange(n_out), hi] += frac
    return w


def digits_count() -> int:
    return len(_load_digits()[1])


def digits_split() -> tuple[np.ndarray, np.ndarray]:
    """(train_ids, test_ids), sorted: per class, a seed-0 permutation, 30 % to test.

    Done with numpy rather than sklearn's train_test_split so that the split
    depends only on numpy's PCG64 stream, not on sklearn internals.
    """
    global _digits_split
    if _digits_split is None:
        _, labels = _load_digits()
        rng = np.random.default_rng(DIGITS_SPLIT_SEED)
        train, test = [], []
        for c in range(10):
            ids = rng.permutation(np.flatnonzero(labels == c))
            n_test = int(round(len(ids) * DIGITS_TEST_FRACTION))
            test.extend(ids[:n_test])
            train.extend(ids[n_test:])
        _digits_split = np.sort(np.array(train)), np.sort(np.array(test))
    return _digits_split[0].copy(), _digits_split[1].copy()


def _check_id(sample_id: int, n: int, what: str) -> int:
    if isinstance(sample_id, bool) or not isinstance(sample_id, int | np.integer):
        raise TypeError(f"{what} sample_id must be an int, got {sample_id!r}")
    if not 0 <= sample_id < n:
        raise IndexError(f"{what} sample_id={sample_id}: must be in 0..{n - 1}")
    return int(sample_id)


def digits_label(sample_id: int) -> int:
    _, labels = _load_digits()
    return int(labels[_check_id(sample_id, len(labels), "digits")])


def digits_frame(sample_id: int, camera: int = 0, seed: int = 0,
                 occlusion: float = 0.0) -> np.ndarray:
    """One camera frame (1, 1, 32, 32) float32 in [0, 1].

    ``occlusion`` is the probability that a 12x12 square of the frame reads 0
    (something in front of the lens). The noise is drawn before the occlusion,
    so the noise of a frame does not depend on ``occlusion``.
    """
    global _upscale
    images, labels = _load_digits()
    i = _check_id(sample_id, len(labels), "digits")
    if camera < 0 or seed < 0:
        raise ValueError(f"camera={camera}, seed={seed}: must be >= 0")
    if _upscale is None:
        _upscale = _bilinear_matrix(8, DIGITS_SIZE)
    img = _upscale @ images[i] @ _upscale.T
    rng = np.random.default_rng([int(seed), int(camera), i])
    img = img + rng.normal(0.0, DIGITS_NOISE_SIGMA, size=img.shape)
    u, y0, x0 = rng.random(), *rng.integers(0, DIGITS_SIZE - DIGITS_OCCLUSION_SIZE + 1, size=2)
    if u < occlusion:
        img[y0:y0 + DIGITS_OCCLUSION_SIZE, x0:x0 + DIGITS_OCCLUSION_SIZE] = 0.0
    return np.clip(img, 0.0, 1.0).astype(np.float32)[None, None]


def digits_frames(sample_ids, camera: int = 0, seed: int = 0,
                  occlusion: float = 0.0) -> np.ndarray:
    """A batch (N, 1, 32, 32): exactly the frames ``digits_frame`` gives one by one."""
    return np.concatenate([digits_frame(int(i), camera, seed, occlusion) for i in sample_ids])


def digits_labels(sample_ids) -> np.ndarray:
    _, labels = _load_digits()
    return labels[np.asarray(sample_ids, dtype=np.int64)].copy()


# ---------------------------------------------------------------- har

def _basic_motions_file(split: str) -> Path | None:
    """The .ts file inside the installed sktime package, found without importing sktime."""
    root = package_dir("sktime")
    if root is None:
        return None
    path = root / "datasets" / "data" / "BasicMotions" / f"BasicMotions_{split.upper()}.ts"
    return path if path.is_file() else None


def parse_ts(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An equal-length multivariate .ts file -> (X (n, dims, length) float64, labels)."""
    xs, ys = [], []
    in_data = False
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            in_data = line.lower() == "@data"
            continue
        *dims, label = line.split(":")
        xs.append([[float(v) for v in d.split(",")] for d in dims])
        ys.append(label.strip().lower())
    return np.array(xs, dtype=np.float64), np.array(ys)


def load_basic_motions_raw(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(X (40, 6, 100), labels) for "train" or "test", unnormalised, in file order."""
    path = _basic_motions_file(split)
    if path is not None:
        return parse_ts(path)
    from sktime.datasets import load_basic_motions  # layout changed: use the public loader

    x, y = load_basic_motions(split=split, return_type="numpy3D")
    return np.asarray(x, dtype=np.float64), np.array([str(v).lower() for v in y])


def _load_har() -> tuple[np.ndarray, np.ndarray]:
    global _har
    if _har is None:
        xtr, ytr = load_basic_motions_raw("train")
        xte, yte = load_basic_motions_raw("test")
        mean = xtr.mean(axis=(0, 2), keepdims=True)
        std = xtr.std(axis=(0, 2), keepdims=True)
        x = ((np.concatenate([xtr, xte]) - mean) / std).astype(np.float32)
        y = np.array([HAR_CLASSES.index(v) for v in np.concatenate([ytr, yte])], dtype=np.int64)
        _har = x, y
    return _har


def har_split() -> tuple[np.ndarray, np.ndarray]:
    """(train_ids 0..39, test_ids 40..79): the data set's own split."""
    return np.arange(HAR_N_TRAIN), np.arange(HAR_N_TRAIN, HAR_N_TRAIN + HAR_N_TEST)


def har_window(sample_id: int, modality: str = "acc") -> np.ndarray:
    """One 10 s window of one modality, (1, 3, 100) float32, train-split standardised."""
    if modality not in HAR_CHANNELS:
        raise ValueError(f"modality={modality!r}: must be one of {sorted(HAR_CHANNELS)}")
    x, y = _load_har()
    i = _check_id(sample_id, len(y), "har")
    return x[i, list(HAR_CHANNELS[modality])][None].copy()


def har_windows(sample_ids, modality: str = "acc") -> np.ndarray:
    return np.concatenate([har_window(int(i), modality) for i in sample_ids])


def har_label(sample_id: int) -> int:
    _, y = _load_har()
    return int(y[_check_id(sample_id, len(y), "har")])


def har_labels(sample_ids) -> np.ndarray:
    _, y = _load_har()
    return y[np.asarray(sample_ids, dtype=np.int64)].copy()
