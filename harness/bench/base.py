"""The gate's baseline as code, not as numbers: a checkout of the baseline commit whose
runs interleave with the current code's in one session (as asv's `continuous` does), so
that the two sides see the same machine and tolerances only cover noise within a session.

The baseline commit is, unless named, the last commit that changed the committed
baseline figures (`results/baselines/gate/`): recommitting them after a change meant to
move the figures moves the reference code with them, and those figures stay the fallback
when the commit cannot run here (a shallow clone, a tree that does not start).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from harness.core.paths import REPO, RESULTS_DIR
from harness.report.gate import COMMITTED

TREES = RESULTS_DIR / "gate" / "trees"  # one extracted tree per baseline commit, reused


def _git(*args: str) -> str:
    p = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                       timeout=60)
    if p.returncode != 0:
        raise LookupError(" ".join((p.stderr or p.stdout).split()) or f"git {args[0]} failed")
    return p.stdout.strip()


def base_commit(ref: str | None = None) -> str:
    """The full hash of `ref`, or of the last commit that changed the committed
    baseline; LookupError (with git's reason) when there is none here."""
    if ref:
        return _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if _git("rev-parse", "--is-shallow-repository") == "true":
        # history cut short: its oldest commit seems to change every file, so "the last
        # commit that changed the baseline" would be that one, whatever it holds
        raise LookupError("a shallow clone cannot tell which commit set the baseline "
                          "(GATE_BASE=<commit> names one)")
    sha = _git("log", "-1", "--format=%H", "--", str(COMMITTED.relative_to(REPO)))
    if not sha:
        raise LookupError(f"no commit in this clone changed {COMMITTED.relative_to(REPO)}")
    return sha


def checkout(sha: str) -> Path:
    """The commit's tree under results/gate/trees/<sha>/, extracted once (atomically: a
    killed extraction leaves only a temporary folder, removed on the next try)."""
    tree = TREES / sha
    if (tree / "harness" / "__init__.py").is_file():
        return tree
    TREES.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{sha[:12]}.", dir=TREES))
    try:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", sha],
                                 capture_output=True, timeout=120, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        os.replace(tmp, tree)
    except (subprocess.CalledProcessError, tarfile.TarError, OSError) as e:
        raise LookupError(f"cannot extract {sha[:12]}: {e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return tree


def runnable(tree: Path) -> str | None:
    """Why the tree's harness cannot run with this venv, or None: its package must be
    the one imported (not this checkout's) and its configs must compose."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    p = subprocess.run([sys.executable, "-c", "import harness, sys; print(harness.__file__)"],
                       cwd=tree, env=env, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        return f"its harness does not import: {(p.stderr.strip().splitlines() or ['?'])[-1]}"
    if not Path(p.stdout.strip()).resolve().is_relative_to(tree.resolve()):
        return f"python imports {p.stdout.strip()}, not the baseline's own package"
    return None


def prepare(ref: str | None) -> tuple[str, Path | None, str | None]:
    """(commit, its runnable tree or None, why not): the gate interleaves with the tree,
    or says why it falls back to the committed figures."""
    try:
        sha = base_commit(ref)
        tree = checkout(sha)
    except LookupError as e:
        return (ref or "?"), None, str(e)
    why = runnable(tree)
    return sha, (None if why else tree), why
