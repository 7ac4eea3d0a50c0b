"""The gate's baseline commit: which commit it is, and its tree made runnable beside this
checkout (no root)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.bench import base
from tests.helpers import REPO


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c",
                           "user.email=t@t", *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture()
def repo(tmp_path: Path, monkeypatch) -> Path:
    """c1 sets the baseline figures, c2 changes code only."""
    r = tmp_path / "repo"
    (r / "results" / "baselines" / "gate").mkdir(parents=True)
    git(tmp_path, "init", "-q", str(r))
    (r / "results" / "baselines" / "gate" / "runs.csv").write_text("a\n1\n")
    git(r, "add", "-A")
    git(r, "commit", "-qm", "c1")
    (r / "code.py").write_text("x = 1\n")
    git(r, "add", "-A")
    git(r, "commit", "-qm", "c2")
    monkeypatch.setattr(base, "REPO", r)
    monkeypatch.setattr(base, "COMMITTED", r / "results" / "baselines" / "gate")
    return r


def test_the_base_is_the_commit_that_set_the_baseline_figures(repo: Path) -> None:
    c1 = git(repo, "rev-list", "--max-parents=0", "HEAD")
    assert base.base_commit() == c1 != git(repo, "rev-parse", "HEAD")
    assert base.base_commit("HEAD") == git(repo, "rev-parse", "HEAD")
    with pytest.raises(LookupError):
        base.base_commit("no-such-ref")


def test_a_shallow_clone_says_it_cannot_tell(repo: Path, tmp_path: Path,
                                             monkeypatch) -> None:
    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{repo}", str(shallow))
    monkeypatch.setattr(base, "REPO", shallow)
    monkeypatch.setattr(base, "COMMITTED", shallow / "results" / "baselines" / "gate")
    with pytest.raises(LookupError, match="shallow"):
        base.base_commit()
    sha, tree, why = base.prepare(None)
    assert tree is None and "shallow" in why


def test_the_base_tree_runs_its_own_package(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(base, "TREES", tmp_path / "trees")
    head = git(REPO, "rev-parse", "HEAD")
    tree = base.checkout(head)
    assert (tree / "harness" / "__init__.py").is_file() and base.checkout(head) == tree
    assert base.runnable(tree) is None  # imports the tree's harness, not this checkout's
    (tree / "harness" / "__init__.py").write_text("raise ImportError('broken on purpose')\n")
    assert "does not import" in base.runnable(tree)
