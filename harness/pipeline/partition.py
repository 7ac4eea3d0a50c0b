"""Cut any ONNX model into partitions at named tensors, validated before anything is written.

A pipeline stage (device, edge, cloud) runs one partition: the sub-graph
between a set of input tensors and a set of output tensors of the full model.
Cutting the full model (rather than exporting each stage separately) keeps the
stages bit-for-bit consistent with it. Cutting is ``onnx.utils.extract_model``;
this module adds what it lacks: every cut is validated before anything is
written, and a bad cut is a one-line ``ConfigError`` naming the tensor, in
particular a tensor that crosses the cut but is not among the partition's
inputs (found by walking the graph backwards from the outputs ourselves).

CLI (exit 2 with one line on bad input)::

    python -m harness.partition models/digits/full.onnx \\
        --part head:image:h --part middle:h:m --part tail:m,h:logits --out /tmp/parts

Tensor names containing ':' or ',' cannot be given on the command line; use
``split_model`` from Python for those.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import onnx

from harness.core.config import ConfigError, fail

PART_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_KNOWN_SHOWN = 8


def _first_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def load_model(model_path: str | os.PathLike) -> onnx.ModelProto:
    """The model, checked by the ONNX checker; ConfigError if missing or not ONNX."""
    path = Path(model_path)
    if not path.is_file():
        fail("model", str(path), "cannot read ONNX model (no such file)")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(str(path))
    except Exception as e:  # DecodeError, ValidationError, OSError ...
        fail("model", str(path), f"cannot read ONNX model ({_first_line(e)})")
    if not model.graph.node:
        fail("model", str(path), "cannot read ONNX model (graph has no nodes)")
    return model


class _Graph:
    """Producer/consumer view of a model's top-level graph for dependency walks."""

    def __init__(self, model: onnx.ModelProto) -> None:
        g = model.graph
        self.initializers = {t.name for t in g.initializer} | {
            t.values.name for t in g.sparse_initializer}
        self.graph_inputs = [i.name for i in g.input if i.name not in self.initializers]
        self.graph_outputs = [o.name for o in g.output]
        self.producer: dict[str, onnx.NodeProto] = {}
        for node in g.node:
            for out in node.output:
                if out:
                    self.producer[out] = node

    def known(self) -> list[str]:
        """Cuttable tensor names: graph inputs and outputs, then names given by hand
        (no '/', unlike the exporter's generated ones), then the rest in graph order."""
        seen: dict[str, None] = {}
        named = [n for n in self.producer if "/" not in n]
        for name in [*self.graph_inputs, *self.graph_outputs, *named, *self.producer]:
            seen.setdefault(name, None)
        return list(seen)

    def deps(self, name: str) -> list[str]:
        """Tensors the producer of ``name`` reads, incl. outer-scope reads of subgraphs."""
        node = self.producer.get(name)
        if node is None:
            return []
        names = [i for i in node.input if i]
        for attr in node.attribute:
            subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for sub in subs:
                names += _outer_refs(sub)
        return names

    def ancestors(self, names: Iterable[str]) -> set[str]:
        """Every tensor the given ones are computed from (including themselves)."""
        seen: set[str] = set()
        stack = list(names)
        while stack:
            t = stack.pop()
            if t in seen:
                continue
            seen.add(t)
            stack += self.deps(t)
        return seen


def _outer_refs(graph: onnx.GraphProto) -> list[str]:
    """Names a subgraph (If/Loop/Scan body) reads from the enclosing scope."""
    local = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    refs: list[str] = []
    for node in graph.node:
        refs += [i for i in node.input if i and i not in local]
        for attr in node.attribute:
            subs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
            for sub in subs:
                refs += [r for r in _outer_refs(sub) if r not in local]
        local.update(o for o in node.output if o)
    return refs


def _names(key: str, names: Sequence[str], part: str) -> list[str]:
    names = list(names)
    if not names:
        raise ConfigError(f"partition {part!r}: {key} must not be empty")
    for n in names:
        if not isinstance(n, str) or not n:
            raise ConfigError(f"partition {part!r}: {key} has an empty or non-string name {n!r}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"partition {part!r}: {key} name {dup[0]!r} given twice")
    return names


def check_cut(model: onnx.ModelProto, inputs: Sequence[str], outputs: Sequence[str],
              part: str = "partition", model_name: str = "model") -> None:
    """Raise ConfigError unless ``outputs`` are computable from ``inputs`` + initializers."""
    inputs = _names("inputs", inputs, part)
    outputs = _names("outputs", outputs, part)
    g = _Graph(model)
    known = g.known()
    known_set = set(known)
    for name in [*inputs, *outputs]:
        if name not in known_set:
            shown = ", ".join(known[:_KNOWN_SHOWN])
            more = f", ... {len(known)} in all" if len(known) > _KNOWN_SHOWN else ""
            raise ConfigError(f"cut tensor {name!r} not found in {model_name} "
                              f"(known: {shown}{more})")
    # What the partition can compute: its inputs, constants, and (in topological order)
    # every node output whose reads are all computable.
    have = set(inputs) | g.initializers
    computable = set(have)
    for node in model.graph.node:
        outs = [o for o in node.output if o]
        if outs and all(d in computable for d in g.deps(outs[0])):
            computable.update(outs)
    # For what it cannot, walk back from the outputs: the first tensor reached that is
    # upstream of the inputs (an earlier partition computes it), or a graph input, is one
    # that must cross the cut.
    upstream = g.ancestors(inputs)
    for out in outputs:
        if out in upstream and out not in computable:
            raise ConfigError(f"partition {part!r}: output {out!r} is computed before its "
                              "inputs (it lies upstream of them)")
    missing: list[str] = []
    seen: set[str] = set()
    stack = list(reversed(outputs))
    while stack:
        t = stack.pop()
        if t in seen or t in computable:
            continue
        seen.add(t)
        if t in upstream or t not in g.producer:
            missing.append(t)
            continue
        stack += reversed(g.deps(t))
    if missing:
        if len(missing) == 1:
            raise ConfigError(f"partition {part!r} needs tensor {missing[0]!r} crossing the cut; "
                              "add it to its inputs")
        listed = ", ".join(repr(m) for m in missing)
        raise ConfigError(f"partition {part!r} needs tensors {listed} crossing the cut; "
                          "add them to its inputs")


def _check_part_name(name: str) -> None:
    if not isinstance(name, str) or not PART_NAME_RE.fullmatch(name):
        raise ConfigError(f"partition name {name!r}: must match {PART_NAME_RE.pattern} "
                          "(it becomes a file name)")


def _extract_checked(model_path: Path, inputs: list[str], outputs: list[str],
                     out_path: Path, part: str) -> Path:
    """extract_model into a temp file beside out_path, check it, then rename into place."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # not mkstemp: onnx.save creates the file, so it gets the usual umask permissions
    tmp = str(out_path.parent / f".{out_path.name}.{os.getpid()}.tmp")
    try:
        onnx.utils.extract_model(str(model_path), tmp, inputs, outputs, check_model=True)
        onnx.checker.check_model(tmp)
        os.replace(tmp, out_path)
    except Exception as e:
        raise ConfigError(f"partition {part!r}: extraction failed ({_first_line(e)})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out_path


def extract_partition(model_path: str | os.PathLike, inputs: Sequence[str],
                      outputs: Sequence[str], out_path: str | os.PathLike,
                      name: str | None = None) -> Path:
    """Write the sub-model from ``inputs`` to ``outputs`` to ``out_path`` (validated first)."""
    model_path, out_path = Path(model_path), Path(out_path)
    part = name or out_path.stem
    model = load_model(model_path)
    check_cut(model, inputs, outputs, part, model_path.name)
    return _extract_checked(model_path, list(inputs), list(outputs), out_path, part)


def split_model(model_path: str | os.PathLike,
                parts: Mapping[str, tuple[Sequence[str], Sequence[str]]],
                out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``out_dir/<name>.onnx`` for each ``name: (inputs, outputs)``.

    Every partition is validated before the first file is written, so a bad
    cut leaves ``out_dir`` untouched.
    """
    model_path, out_dir = Path(model_path), Path(out_dir)
    if not parts:
        raise ConfigError("parts: at least one partition is needed")
    model = load_model(model_path)
    for name, spec in parts.items():
        _check_part_name(name)
        if not isinstance(spec, tuple | list) or len(spec) != 2:
            raise ConfigError(f"partition {name!r}: expected (inputs, outputs), got {spec!r}")
        check_cut(model, spec[0], spec[1], name, model_path.name)
    if out_dir.exists() and not out_dir.is_dir():
        fail("out", str(out_dir), "exists and is not a directory")
    return {name: _extract_checked(model_path, list(ins), list(outs), out_dir / f"{name}.onnx",
                                   name)
            for name, (ins, outs) in parts.items()}


def parse_part(spec: str) -> tuple[str, list[str], list[str]]:
    """``NAME:in1,in2:out1,out2`` -> (name, inputs, outputs)."""
    fields = spec.split(":")
    if len(fields) != 3 or not all(fields):
        raise ConfigError(f"--part={spec!r}: expected NAME:in1,in2:out1,out2")
    name, ins, outs = fields
    _check_part_name(name)
    return name, [s.strip() for s in ins.split(",")], [s.strip() for s in outs.split(",")]


# ---------------------------------------------------------------- serving

# ---------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m harness.partition",
        description="Cut an ONNX model into partitions at named tensors.")
    ap.add_argument("model", help="the full ONNX model")
    ap.add_argument("--part", action="append", default=[], metavar="NAME:IN1,IN2:OUT1,OUT2",
                    help="one partition (repeat for each)")
    ap.add_argument("--out", required=True, help="directory for NAME.onnx files")
    args = ap.parse_args(argv)
    try:
        parts: dict[str, tuple[list[str], list[str]]] = {}
        for spec in args.part:
            name, ins, outs = parse_part(spec)
            if name in parts:
                raise ConfigError(f"--part={spec!r}: partition {name!r} given twice")
            parts[name] = (ins, outs)
        written = split_model(args.model, parts, args.out)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    for name, path in written.items():
        ins, outs = parts[name]
        print(f"{name}: {','.join(ins)} -> {','.join(outs)}  {path} "
              f"({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
