"""The delay line's control protocol: link properties, their limits, the messages.

Pure (standard library only, no sockets): the line parses what it receives with
it, and the host side (``harness.emulation.shapers.userspace``) builds what it
sends with it, so the two cannot disagree on a name or a limit.

JSON lines on stdin, one JSON reply line on stdout each; ``{"ok": true, "ready":
true}`` once started.

* ``{"op": "add", "link": "l0", "a": "ifA", "b": "ifB", "seed": 1,
  "fwd": {props}, "rev": {props}}`` -> ``{"ok": true}``; props are any of
  ``delay_ms``, ``jitter_ms``, ``loss_pct``, ``up`` (defaults 0, 0, 0, true).
* ``{"op": "add_many", "links": [<add without op>, ...]}`` -> ``{"ok": true}``:
  every link or none (a bad one names itself and leaves nothing added), for
  bringing up hundreds of links in one round trip.
* ``{"op": "set", "link": "l0", "dir": "fwd"|"rev"|"both", <props>}`` ->
  ``{"ok": true}``; dir defaults to both, absent props keep their value, and
  a bad value changes nothing.
* ``{"op": "stats"}`` -> ``{"ok": true, "links": {"l0": {"fwd": counters,
  "rev": counters}}}``; counters: ``rx_frames``, ``rx_bytes``, ``fwd_frames``,
  ``fwd_bytes``, ``loss_frames``, ``loss_bytes``, ``down_frames``,
  ``down_bytes``, ``err_frames`` (send failures), ``sock_drops`` (kernel drops,
  receive buffer full) and ``queued`` (waiting for their release time).
* ``{"op": "quit"}`` -> reply, then exit 0. EOF on stdin or SIGTERM: exit 0.
  Closing a packet socket waits for an RCU grace period (~13 ms here), so the
  sockets are closed from many threads at once: 490 took 7 s one by one.
* Errors -> ``{"ok": false, "error": "one line"}``; the process keeps running.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

MODULE = "harness.emulation.shapers.delayline"  # what `python -m` runs
DIRS = ("fwd", "rev")
LIMITS = {"delay_ms": math.inf, "jitter_ms": math.inf, "loss_pct": 100.0}
OPS = ("add", "add_many", "set", "stats", "quit")
READY = {"ok": True, "ready": True}  # the first line the process writes


@dataclass(frozen=True, slots=True)
class DirProps:
    """One direction of a link, as the line applies it."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    up: bool = True


@dataclass(slots=True)
class Counters:
    """One direction's counters, as a `stats` reply carries them."""

    rx_frames: int = 0
    rx_bytes: int = 0
    fwd_frames: int = 0
    fwd_bytes: int = 0
    loss_frames: int = 0
    loss_bytes: int = 0
    down_frames: int = 0
    down_bytes: int = 0
    err_frames: int = 0
    sock_drops: int = 0
    queued: int = 0  # +1 when a frame enters the release heap, -1 when it leaves


# -- parsing (the line) -------------------------------------------------------------------


def parse_props(obj: Any, base: DirProps = DirProps()) -> DirProps:
    """Return ``base`` updated with the props in ``obj``; raise ValueError if bad."""
    if not isinstance(obj, dict):
        raise ValueError(f"props must be an object, got {obj!r}")
    if extra := set(obj) - {f.name for f in fields(DirProps)}:
        raise ValueError(f"unknown prop(s): {', '.join(sorted(extra))}")
    upd: dict[str, Any] = {}
    for key, hi in LIMITS.items():
        if key in obj:
            v = obj[key]
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ValueError(f"{key} must be a number, got {v!r}")
            if not (math.isfinite(v) and 0 <= v <= hi):
                raise ValueError(f"{key} must be in [0, {hi}], got {v!r}")
            upd[key] = float(v)
    if "up" in obj:
        if not isinstance(obj["up"], bool):
            raise ValueError(f"up must be true or false, got {obj['up']!r}")
        upd["up"] = obj["up"]
    return replace(base, **upd)


def _check_add(cmd: Any) -> None:
    if not isinstance(cmd, dict) or not isinstance(cmd.get("link"), str):
        raise ValueError("link must be a string")
    for key in ("a", "b"):
        if not isinstance(cmd.get(key), str) or not cmd[key]:
            raise ValueError(f"{key} must be an interface name")
    if cmd["a"] == cmd["b"]:
        raise ValueError("a and b must differ")
    seed = cmd.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError("seed must be an integer")


def parse_command(line: str | bytes) -> dict[str, Any]:
    """Decode one control line into a dict with a known ``op``; raise ValueError."""
    try:
        cmd = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"bad JSON: {e}") from None
    if not isinstance(cmd, dict) or cmd.get("op") not in OPS:
        raise ValueError(f"command must be an object with op {'|'.join(OPS)}")
    if cmd["op"] in ("add", "set") and not isinstance(cmd.get("link"), str):
        raise ValueError("link must be a string")
    if cmd["op"] == "add":
        _check_add(cmd)
    if cmd["op"] == "add_many":
        links = cmd.get("links")
        if not isinstance(links, list) or not links:
            raise ValueError("links must be a non-empty list")
        for i, link in enumerate(links):
            try:
                _check_add(link)
            except ValueError as e:
                raise ValueError(f"links[{i}]: {e}") from None
    if cmd["op"] == "set" and cmd.get("dir", "both") not in (*DIRS, "both"):
        raise ValueError("dir must be fwd|rev|both")
    return cmd


# -- building (the host) ------------------------------------------------------------------


def encode(msg: dict[str, Any]) -> str:
    """One message (a command or a reply) as its line."""
    return json.dumps(msg) + "\n"


def command(op: str, **args: Any) -> dict[str, Any]:
    """A command without props (`stats`, `quit`)."""
    if op not in OPS:
        raise ValueError(f"op must be one of {'|'.join(OPS)}, got {op!r}")
    return {"op": op, **args}


def link_spec(link: str, a: str, b: str, seed: int, fwd: DirProps,
              rev: DirProps) -> dict[str, Any]:
    """One link of an `add_many` (an `add` without its op)."""
    return {"link": link, "a": a, "b": b, "seed": seed, "fwd": asdict(fwd), "rev": asdict(rev)}


def add_many(specs: list[dict[str, Any]]) -> dict[str, Any]:
    return command("add_many", links=specs)


def set_props(link: str, direction: str, props: DirProps) -> dict[str, Any]:
    """Every prop of one direction (or "both") of a link."""
    return command("set", link=link, dir=direction, **asdict(props))
