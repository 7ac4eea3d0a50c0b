"""Who may read what the harness writes: root alone, unless `results.readable_by` opens it.

A run's directory holds the resolved config, logs, model partitions and every
request's outcome; on a shared machine that is nobody else's business unless
the user says so. A umask does it for every file the harness creates and for
every process it starts in a node (they inherit it, in containers too: they are
entered with nsenter, not through the daemon). A pass over the directory covers
what was made before the config was known (Hydra's run dir, `.hydra/`, the
log) or by a process with its own umask (a Ray worker).
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from harness.core.config import READABLE_BY, ConfigError, ResultsConfig

PRIVATE = "root"


def use(readable_by: str = PRIVATE) -> None:
    """What is created from now on (by this process and those it starts) gets these modes.
    The default holds until a run's config says otherwise."""
    os.umask(READABLE_BY[readable_by])


def use_for_command(prog: str, overrides: list[str]) -> None:
    """A command that hands Hydra overrides on to its runs (the bench) writes its own
    files as readable as theirs; a bad value is bad input (one line, exit 2)."""
    try:
        use(ResultsConfig.from_overrides(overrides).readable_by)
    except ConfigError as e:
        print(f"{prog} error: {e}", file=sys.stderr)
        sys.exit(2)


def dir_mode(readable_by: str) -> int:
    return 0o777 & ~READABLE_BY[readable_by]


def file_mode(readable_by: str, executable: bool = False) -> int:
    return (0o777 if executable else 0o666) & ~READABLE_BY[readable_by]


def apply(path: Path, readable_by: str, opens_up_to: Path | None = None) -> None:
    """Files created from now on, and everything already under `path`, get the modes of
    `readable_by`. Opening access also adds the bits to the ancestors of `path` up to
    `opens_up_to` (e.g. results/, made private by an earlier run), never removes any:
    a readable run inside an unreadable folder would not be readable."""
    use(readable_by)
    path = Path(path)
    if not path.is_dir():
        return
    for top, dirs, files in os.walk(path):
        _chmod(Path(top), dir_mode(readable_by))
        for name in files:
            f = Path(top) / name
            try:
                st = f.lstat()
            except OSError:
                continue  # removed meanwhile (a temp file renamed into place)
            if stat.S_ISREG(st.st_mode):  # symlinks have no mode of their own
                _chmod(f, file_mode(readable_by, bool(st.st_mode & 0o111)))
        dirs[:] = [d for d in dirs if not (Path(top) / d).is_symlink()]
    if readable_by != PRIVATE and opens_up_to is not None:
        stop = Path(opens_up_to).resolve()
        here = path.resolve()
        if stop in here.parents:
            for parent in here.parents:
                _chmod(parent, parent.stat().st_mode & 0o7777 | dir_mode(readable_by))
                if parent == stop:
                    break


def _chmod(path: Path, mode: int) -> None:
    try:
        os.chmod(path, mode)
    except FileNotFoundError:
        pass


def use_like(folder: Path) -> None:
    """Write into `folder` (a run's, a sweep's, a bench's) as readable as it is itself:
    a report or trace made later keeps a private run private and an open one open. A
    folder not made yet gets the private default."""
    try:
        mode = Path(folder).stat().st_mode & 0o777
    except OSError:
        use(PRIVATE)
        return
    os.umask(0o777 & ~mode)
