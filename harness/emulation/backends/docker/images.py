"""The images nodes run: what goes into them, and whether one present here is current.

`containers/build.sh` builds `hx-stage` with the harness code installed and labels
it with `source_hash()`; a run refuses an image built from other code (a stage in a
container must compute what a process stage computes), and names `make images`.
`python -m harness.emulation.backends.docker.images requirements|source-hash` gives
build.sh the same facts the harness checks, so there is one definition of each.
"""

from __future__ import annotations

import hashlib
import sys
from importlib.metadata import version

from harness.core.paths import REPO

SOURCE_LABEL = "hx.source"  # image label: source_hash() of the code it was built from


def source_hash() -> str:
    """Hash of the harness code and packaging (what the stage image installs)."""
    h = hashlib.sha256()
    files = sorted((REPO / "harness").rglob("*.py")) + [REPO / "pyproject.toml"]
    for f in files:
        h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def requirements(flavour: str = "stage") -> list[str]:
    """The stage image's Python packages, pinned to the host venv's versions (so a stage
    in a container computes exactly what a process stage does); `stage-gpu` swaps in
    onnxruntime-gpu."""
    ort = "onnxruntime-gpu" if flavour == "stage-gpu" else f"onnxruntime=={version('onnxruntime')}"
    return [ort, *(f"{d}=={version(d)}" for d in ("grpcio", "numpy", "protobuf")),
            f"tritonclient[grpc]=={version('tritonclient')}"]


def main(argv: list[str]) -> int:
    if argv[:1] == ["source-hash"]:
        print(source_hash())
    elif argv[:1] == ["requirements"] and len(argv) == 2:
        print("\n".join(requirements(argv[1])))
    else:
        print("usage: images source-hash | requirements stage|stage-gpu", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
