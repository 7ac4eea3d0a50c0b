"""The stage graph a pipeline config describes: pure functions of its stages as written.

Stages form a chain, each sending to the one after it, unless a stage names a later
stage as its `next`: branches (one per sensor modality, say) then meet at a join
stage. Nothing here knows nodes or the topology (that is the plan's: plan.py); the
config checks itself with these, and the plan records what they say once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def next_index(stages: Sequence[Any], i: int) -> int | None:
    """The stage stage `i` sends to (None: the last stage answers)."""
    nxt = stages[i].next
    if nxt is not None:
        return [s.name for s in stages].index(nxt)
    return i + 1 if i + 1 < len(stages) else None


def upstream(stages: Sequence[Any], i: int) -> list[int]:
    """The stages sending to stage `i`."""
    return [j for j in range(len(stages)) if next_index(stages, j) == i]


def joins(stages: Sequence[Any]) -> list[int]:
    """Stages several stages send to."""
    return [i for i in range(len(stages)) if len(upstream(stages, i)) > 1]


def entries(stages: Sequence[Any]) -> list[int]:
    """Stages no stage sends to: where sensors feed the pipeline."""
    return [i for i in range(len(stages)) if not upstream(stages, i)]


def carries(stages: Sequence[Any]) -> list[list[str]]:
    """For each stage, the tensors it receives: its inputs plus what later stages need
    (in a pipeline with a join: its inputs only; nothing rides along a branch)."""
    if joins(stages):
        return [list(s.inputs) for s in stages]
    need: list[list[str]] = []
    later: list[str] = []
    for s in reversed(stages):
        produced = set(s.outputs)
        carry = list(dict.fromkeys(list(s.inputs) + [t for t in later if t not in produced]))
        need.append(carry)
        later = carry
    need.reverse()
    return need
