"""The folder tree is the architecture: these checks keep it so (no root, no network).

- Layers import only downwards (`LAYERS`), so a change lands in one obvious place
  (relative imports are resolved and judged alike).
- Code that runs inside an emulated node (folders named `node/`, and the delay
  line in the wire namespace) imports nothing host-side, even lazily.
- The top level holds only thin entry points and `run/`.
- No module is much over 300 lines without a stated reason at its top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO

PKG = REPO / "harness"
# lower layers first; a layer may import itself, `core` and any layer before it
LAYERS = ["core", "emulation", "faults", "pipeline", "workload", "techniques", "measure",
          "hosts", "run", "report", "bench", "sweeps", "selftest"]
ENTRIES = {"__init__", "__main__", "chaos", "clean", "doctor", "gate", "overhead",
           "partition", "probe", "stage", "trace"}
HOST_SIDE = ("harness.emulation", "harness.run", "harness.faults", "harness.report",
             "harness.bench", "harness.measure", "harness.techniques", "mininet", "hydra",
             "omegaconf")
DELAYLINE = "harness.emulation.shapers.delayline"  # a package: it and every module in it
IN_NODE_OK = ("harness.measure.node", DELAYLINE)


def modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def imports(path: Path, module: str) -> set[str]:
    """Every module `path` (the module named `module`) imports, at the top or inside
    functions; a relative import is resolved against its package, as Python does."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                assert node.level <= len(parts), f"{module}: import beyond the top package"
                base = ".".join([*parts[:len(parts) - node.level + 1], *filter(None, [base])])
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else None


def layer_violations(mods: dict[str, Path]) -> list[str]:
    """Imports (absolute or relative) from a layer into a later one."""
    wrong = []
    for name, path in mods.items():
        src = layer(name)
        if src is None:
            continue
        for imp in imports(path, name):
            dst = layer(imp) if imp.startswith("harness.") else None
            if dst is None or dst == src or dst == "core":
                continue
            if LAYERS.index(dst) > LAYERS.index(src):
                wrong.append(f"{name} imports {imp} ({src} -> {dst})")
    return sorted(wrong)


def test_layers_import_only_downwards() -> None:
    wrong = layer_violations(modules())
    assert not wrong, "\n".join(wrong)


def test_relative_imports_are_resolved_and_judged_by_the_same_rules(tmp_path: Path) -> None:
    """A relative import is no way around the layers (the repository has none today)."""
    node = tmp_path / "harness" / "pipeline" / "node"
    node.mkdir(parents=True)
    (node / "__init__.py").write_text("from .stage import Stage\n")
    (node / "stage.py").write_text("from . import calls\nfrom ..routing import Route\n"
                                   "def f():\n    from ...run import lifecycle\n")
    mods = {"harness.pipeline.node": node / "__init__.py",
            "harness.pipeline.node.stage": node / "stage.py"}
    assert imports(node / "__init__.py", "harness.pipeline.node") == {
        "harness.pipeline.node.stage", "harness.pipeline.node.stage.Stage"}
    assert imports(node / "stage.py", "harness.pipeline.node.stage") == {
        "harness.pipeline.node", "harness.pipeline.node.calls", "harness.pipeline.routing",
        "harness.pipeline.routing.Route", "harness.run", "harness.run.lifecycle"}
    assert layer_violations(mods) == [
        "harness.pipeline.node.stage imports harness.run (pipeline -> run)",
        "harness.pipeline.node.stage imports harness.run.lifecycle (pipeline -> run)"]


def in_node_modules() -> list[str]:
    """Folders named `node/`, and the delay line's package: its protocol, its line and its
    process (the protocol is imported host-side too, so it must stay pure)."""
    return sorted(n for n in modules()
                  if ".node." in f"{n}." or f"{n}.".startswith(f"{DELAYLINE}."))


def test_in_node_code_imports_nothing_host_side() -> None:
    mods = modules()
    assert "harness.workload.node.sensor" in in_node_modules()
    assert {f"{DELAYLINE}.protocol", f"{DELAYLINE}.line"} <= set(in_node_modules())
    wrong = []
    for name in in_node_modules():
        seen, todo = set(), [name]
        while todo:  # transitively, through the harness modules it uses
            m = todo.pop()
            if m in seen or m not in mods:
                continue
            seen.add(m)
            for imp in imports(mods[m], m):
                if imp.startswith(HOST_SIDE) and not imp.startswith(IN_NODE_OK) \
                        and not (imp.startswith("harness.techniques.") and ".node" in imp):
                    wrong.append(f"{name}: {m} imports {imp}")
                if imp.startswith("harness."):
                    todo.append(imp)
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_in_node_code_is_loaded_without_host_side_packages() -> None:
    """Importing a module imports its packages first: the packages of in-node code hold
    no code of their own (a technique's host side is its `technique.py`), or a stage
    loading a technique's forwarding policy would load the technique with it."""
    mods = modules()
    wrong = []
    for name in in_node_modules():
        parts = name.split(".")
        for k in range(1, len(parts)):
            pkg = ".".join(parts[:k])
            wrong += [f"{name}: its package {pkg} imports {imp}"
                      for imp in imports(mods[pkg], pkg) if pkg in mods
                      and (imp.startswith("harness") or imp.startswith(HOST_SIDE))]
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_top_level_holds_only_entry_points_and_the_run() -> None:
    top = {p.stem for p in PKG.glob("*.py")}
    assert top <= ENTRIES, top - ENTRIES
    dirs = {p.name for p in PKG.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert dirs == set(LAYERS) | {"techniques"}, dirs
    for stem in ENTRIES - {"__init__", "__main__"}:
        lines = (PKG / f"{stem}.py").read_text().splitlines()
        assert len(lines) <= 15, f"harness/{stem}.py is not a thin entry point"


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_modules_are_small_or_say_why(path: Path) -> None:
    text = path.read_text()
    if len(text.splitlines()) > 320:
        assert "One module on purpose" in text[:2000], \
            f"{path.relative_to(REPO)}: {len(text.splitlines())} lines and no reason stated"


def import_cycles(mods: dict[str, Path], within: str) -> list[list[str]]:
    """Modules under `within` that import each other, directly or through others there
    (imports inside functions count: a cycle broken only by a lazy import is still one)."""
    names = {m for m in mods if m == within or m.startswith(f"{within}.")}
    deps = {m: {i for i in imports(mods[m], m) if i in names and i != m} for m in names}
    cycles, done = [], set()
    for start in sorted(names):
        stack = [(start, [start])]
        while stack:
            m, path = stack.pop()
            for d in sorted(deps[m]):
                if d == start:
                    cycles.append(path)
                elif d not in path and d not in done:
                    stack.append((d, [*path, d]))
        done.add(start)
    return cycles


def test_the_pipeline_modules_import_one_way() -> None:
    """config <- placement <- plan <- deployment: the config knows neither where stages
    run nor how they are started, and no pipeline module imports one that imports it."""
    mods = modules()
    config = imports(mods["harness.pipeline.config"], "harness.pipeline.config")
    for later in ("placement", "plan", "deployment"):
        assert not any(i.startswith(f"harness.pipeline.{later}") for i in config), later
    assert import_cycles(mods, "harness.pipeline") == []


def test_an_import_cycle_is_found_through_a_lazy_import(tmp_path: Path) -> None:
    pkg = tmp_path / "harness" / "pipeline"
    pkg.mkdir(parents=True)
    (pkg / "config.py").write_text("def f():\n    from harness.pipeline.placement import x\n")
    (pkg / "placement.py").write_text("from harness.pipeline import deployment\n")
    (pkg / "deployment.py").write_text("from harness.pipeline.config import StageSpec\n")
    mods = {f"harness.pipeline.{p.stem}": p for p in pkg.glob("*.py")}
    assert import_cycles(mods, "harness.pipeline") == [
        ["harness.pipeline.config", "harness.pipeline.placement", "harness.pipeline.deployment"]]
