"""Run outputs, written atomically (temp file + rename): a crash never leaves half a file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


def write_text_atomic(path: Path, text: str, mode: int | None = None) -> None:
    """`mode`: these permissions whatever the process's umask (None: the umask's)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if mode is None else mode)
    with open(fd, "w") as f:
        if mode is not None:
            os.fchmod(f.fileno(), mode)
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_parquet(path: Path, rows: list[dict], columns: list[str]) -> None:
    import pandas as pd

    write_parquet_df(path, pd.DataFrame(rows, columns=columns))


def write_parquet_df(path: Path, df) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)
