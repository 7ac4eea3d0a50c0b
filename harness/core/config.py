"""Structured configs: dataclasses the composed Hydra config is checked against.

Hydra composes YAML; this module turns the result into typed dataclasses and
rejects bad input with one line naming the key and the value, before anything
touches the network (the caller exits 2 on ConfigError).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """Bad user input; the message is one line naming the offending key and value."""


def fail(key: str, value: Any, why: str) -> typing.NoReturn:
    raise ConfigError(f"{key}={value!r}: {why}")


def target_of(key: str, node: Any) -> Any:
    """The object a plug-in's `_target_` (a dotted path) names; a one-line ConfigError
    (`<key>._target_=...`) when it is missing or cannot be imported. Plain importlib,
    not Hydra: processes inside nodes resolve plug-ins too."""
    target = node.get("_target_") if isinstance(node, dict) else None
    if not target:
        fail(f"{key}._target_", target, "missing")
    module, _, attr = str(target).rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError):
        fail(f"{key}._target_", target, "cannot be imported")


def build_plugin(group: str, node: dict) -> Any:
    """A plug-in built from its config (`_target_` + kwargs), as the coordinator and every
    host's agent build shapers and backends; a TypeError there is a ConfigError."""
    kwargs = dict(node)
    fn = target_of(group, kwargs)
    del kwargs["_target_"]
    try:
        return fn(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{group}: {e}") from None


def check_finite(key: str, value: Any) -> None:
    """Every number in `value` (a config tree: mappings, lists, scalars) is finite: NaN
    compares false with every bound, so a range check alone lets it through."""
    if isinstance(value, float) and not math.isfinite(value):
        fail(key, value, "must be a finite number")
    if isinstance(value, dict):
        for k, v in value.items():
            check_finite(f"{key}.{k}" if key else str(k), v)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            check_finite(f"{key}[{i}]", v)


def check_range(key: str, value: float | None, lo: float | None = None,
                hi: float | None = None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        fail(key, value, "must be a number")
    check_finite(key, value)
    if lo is not None and value < lo:
        fail(key, value, f"must be >= {lo}")
    if hi is not None and value > hi:
        fail(key, value, f"must be <= {hi}")


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            fail(key, value, "must not be null")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, key)
            except ConfigError as e:
                errors.append(e)
        raise errors[0]
    if origin is list:
        if not isinstance(value, list | tuple):
            fail(key, value, "must be a list")
        (item_tp,) = typing.get_args(tp)
        return [_convert(item_tp, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            fail(key, value, "must be a mapping")
        _, val_tp = typing.get_args(tp)
        return {str(k): _convert(val_tp, v, f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            fail(key, value, "must be true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail(key, value, "must be an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            fail(key, value, "must be a number")
        check_finite(key, value)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            fail(key, value, "must be a string")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {key}")


def check_type(tp: Any, value: Any, key: str) -> Any:
    """`value` as a field of type `tp` is read (`int`, `float | None`, `list[str]`, ...):
    converted, or a one-line ConfigError naming `key`."""
    return _convert(tp, value, key)


def from_dict(cls: type, data: Any, key: str) -> Any:
    """Build dataclass `cls` from a plain mapping; unknown keys are errors."""
    if dataclasses.is_dataclass(data):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        fail(key, data, f"must be a mapping of {cls.__name__} fields")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for k in data:
        if k not in fields:
            fail(f"{key}.{k}" if key else k, data[k],
                 f"unknown key (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name in fields:
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], f"{key}.{name}" if key else name)
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        check(key)
    return obj


@dataclass
class LinkProps:
    """Link properties; None means "inherit" (from the network defaults)."""

    bw_mbit: float | None = None  # 0 = unlimited
    delay_ms: float | None = None  # one way, per direction
    jitter_ms: float | None = None  # delay uniform in [delay - jitter, delay + jitter]
    loss_pct: float | None = None  # per direction
    queue_pkts: int | None = None  # bottleneck queue length

    def validate(self, key: str) -> None:
        check_range(f"{key}.bw_mbit", self.bw_mbit, 0, 100_000)
        check_range(f"{key}.delay_ms", self.delay_ms, 0, 60_000)
        check_range(f"{key}.jitter_ms", self.jitter_ms, 0, 60_000)
        check_range(f"{key}.loss_pct", self.loss_pct, 0, 100)
        check_range(f"{key}.queue_pkts", self.queue_pkts, 1, 1_000_000)

    def over(self, base: LinkProps) -> LinkProps:
        """These properties where set, `base`'s elsewhere."""
        return LinkProps(**{
            f.name: getattr(self, f.name) if getattr(self, f.name) is not None
            else getattr(base, f.name)
            for f in dataclasses.fields(self)
        })

    @staticmethod
    def unshaped(queue_pkts: int | None) -> LinkProps:
        """Nothing applied (no cap, delay, jitter or loss), a queue of `queue_pkts`."""
        return LinkProps(0.0, 0.0, 0.0, 0.0, queue_pkts)

    def set_fields(self) -> dict[str, float | int]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def netns_congestion_controls() -> list[str]:
    """Algorithms a non-initial network namespace may select (the kernel's allowed list)."""
    try:
        with open("/proc/sys/net/ipv4/tcp_allowed_congestion_control") as f:
            return f.read().split()
    except OSError:
        return []


@dataclass
class NetworkConfig:
    """Default properties of every link, and how they are applied."""

    bw_mbit: float = 0.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    queue_pkts: int = 1000
    tcp_cc: str = "auto"  # TCP congestion control of every node; auto = cubic, else reno

    def validate(self, key: str) -> None:
        self.defaults().validate(key)
        allowed = netns_congestion_controls()
        if self.tcp_cc != "auto" and allowed and self.tcp_cc not in allowed:
            fail(f"{key}.tcp_cc", self.tcp_cc,
                 "a network namespace may only use net.ipv4.tcp_allowed_congestion_control "
                 f"({', '.join(allowed)})")
        if self.jitter_ms > self.delay_ms:
            fail(f"{key}.jitter_ms", self.jitter_ms, "must be <= delay_ms")

    def congestion_control(self) -> str:
        """The algorithm nodes use: the host's default may pace (BBR) or be unavailable."""
        if self.tcp_cc != "auto":
            return self.tcp_cc
        allowed = netns_congestion_controls()
        return "cubic" if "cubic" in allowed or not allowed else "reno"

    def defaults(self) -> LinkProps:
        return LinkProps(self.bw_mbit, self.delay_ms, self.jitter_ms, self.loss_pct,
                         self.queue_pkts)


@dataclass
class FidelityConfig:
    """Measure each shaped link at run start and compare with its configuration."""

    enabled: bool = False
    links: list[str] = field(default_factory=list)  # empty = every link
    probes: int = 50  # UDP echo probes per link
    interval_ms: float = 5.0
    bw_duration_s: float = 2.0  # iperf3 per capped link; 0 = skip bandwidth
    delay_tol_ms: float = 0.5  # allowed |measured - configured| one-way delay
    attempts: int = 3  # measure a link out of tolerance again, up to this many times
    bw_tol_pct: float = 5.0

    def validate(self, key: str) -> None:
        check_range(f"{key}.probes", self.probes, 1, 100_000)
        check_range(f"{key}.interval_ms", self.interval_ms, 0.1, 10_000)
        check_range(f"{key}.bw_duration_s", self.bw_duration_s, 0, 600)
        check_range(f"{key}.delay_tol_ms", self.delay_tol_ms, 0, 60_000)
        check_range(f"{key}.attempts", self.attempts, 1, 100)
        check_range(f"{key}.bw_tol_pct", self.bw_tol_pct, 0, 1000)


@dataclass
class RunConfig:
    duration_s: float = 10.0

    def validate(self, key: str) -> None:
        check_range(f"{key}.duration_s", self.duration_s, 0, 7 * 86400)


# results.readable_by -> umask: root (dirs 0700, files 0600), the group, or everyone
READABLE_BY = {"root": 0o077, "group": 0o027, "all": 0o022}


@dataclass
class ResultsConfig:
    """Who may read a run's outputs (and a sweep's, a bench's): root alone by default."""

    readable_by: str = "root"  # root: dirs 0700, files 0600; group: 0750/0640; all: 0755/0644

    def validate(self, key: str) -> None:
        if self.readable_by not in READABLE_BY:
            fail(f"{key}.readable_by", self.readable_by, f"must be one of {', '.join(READABLE_BY)}")

    @classmethod
    def from_overrides(cls, overrides: list[str]) -> ResultsConfig:
        """For a command that hands Hydra overrides on to its runs (the bench): its own
        files are then as readable as theirs."""
        data = {}
        for o in overrides:
            key, _, value = o.partition("=")
            if key.lstrip("+") == "results.readable_by":
                data["readable_by"] = value
        return from_dict(cls, data, "results")


MODES = ("run", "cli")
