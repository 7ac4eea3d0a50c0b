"""Sysctls, veth offloads and link state of a network namespace, set from this process.

Why not `ethtool`, `sysctl` and `ip link` per device: a 200-node network has about
1,000 veth ends, and one process each cost seconds; here each is a few ioctls
or a file write. A fresh thread joins the namespace (`setns` changes only the
calling thread's network namespace), so this process, its other threads and
the node are untouched; the thread ends when its work is done. `/proc/sys/net`
follows the namespace of the thread that opens it, as the `sysctl` tool run in
the namespace would, and a child process started from the thread is born in it
(the node's `ip -batch` and `tc -batch` need no `nsenter` first). The thread
starts no threads of its own: they would inherit its namespace.

Offloads are switched off by name through ETHTOOL_SFEATURES, as `ethtool -K DEV
tso off gso off gro off tx off` does (the legacy one-flag ioctls miss features
newer than them, e.g. tx-tcp-accecn-segmentation), and read back: a feature
still on is an error, never silently ignored.
"""

from __future__ import annotations

import ctypes
import fcntl
import fnmatch
import os
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from harness.emulation.tc import EmulationError

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCETHTOOL = 0x8913, 0x8914, 0x8946
IFF_UP = 0x1
IFREQ_SIZE = 40
ETHTOOL_GSTRINGS, ETHTOOL_GSSET_INFO = 0x1B, 0x37
ETHTOOL_GFEATURES, ETHTOOL_SFEATURES = 0x3A, 0x3B
ETH_SS_FEATURES = 4
ETH_GSTRING_LEN = 32
# `ethtool -K DEV tso off gso off gro off tx off`, by ethtool's own name patterns: frames
# stay MTU-sized and carry their checksums, which the delay line needs (see shapers/delayline/)
OFFLOADS = ("tx-tcp*-segmentation", "tx-generic-segmentation", "rx-gro", "tx-checksum-*")

BATCH_TIMEOUT_S = 60

_libc = ctypes.CDLL(None, use_errno=True)
_names: list[str] = []  # the kernel's feature names, the same for every device


def enter_netns(path: str) -> None:
    """This thread (a process's only thread: the whole process) into the network
    namespace at `path`."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def in_netns(path: str, fn: Callable[[], T]) -> T:
    """`fn()` run in a new thread inside the network namespace at `path` (e.g.
    /proc/PID/ns/net or /run/netns/NAME); its result, or its exception."""
    out: dict[str, object] = {}

    def body() -> None:
        try:
            enter_netns(path)
            out["value"] = fn()
        except BaseException as e:  # handed to the caller's thread
            out["error"] = e

    t = threading.Thread(target=body, name="netns", daemon=True)
    t.start()
    t.join()
    if "error" in out:
        err = out["error"]
        if isinstance(err, OSError | EmulationError):
            raise EmulationError(f"{path}: {err}") from err
        raise err  # type: ignore[misc]
    return out["value"]  # type: ignore[return-value]


def _ifreq(dev: str, tail: bytes) -> bytearray:
    name = dev.encode()
    if not 0 < len(name) < 16:
        raise EmulationError(f"bad interface name {dev!r}")
    return bytearray(struct.pack("16s", name) + tail.ljust(IFREQ_SIZE - 16, b"\0"))


def _ethtool(sock: socket.socket, dev: str, data: ctypes.Array) -> None:
    """One SIOCETHTOOL request; `data` is the ethtool struct, read and written in place."""
    ifr = _ifreq(dev, struct.pack("P", ctypes.addressof(data)))
    try:
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifr)
    except OSError as e:
        cmd = struct.unpack_from("I", data.raw)[0]
        raise EmulationError(f"{dev}: ethtool request {cmd:#x}: {e.strerror}") from None


def feature_names(sock: socket.socket, dev: str) -> list[str]:
    if _names:
        return _names
    info = ctypes.create_string_buffer(struct.pack("IIQI", ETHTOOL_GSSET_INFO, 0,
                                                   1 << ETH_SS_FEATURES, 0), 24)
    _ethtool(sock, dev, info)
    (count,) = struct.unpack_from("I", info.raw, 16)
    strings = ctypes.create_string_buffer(
        struct.pack("III", ETHTOOL_GSTRINGS, ETH_SS_FEATURES, count)
        + bytes(count * ETH_GSTRING_LEN))
    _ethtool(sock, dev, strings)
    raw = strings.raw[12:]
    _names[:] = [raw[i * ETH_GSTRING_LEN:(i + 1) * ETH_GSTRING_LEN].split(b"\0")[0].decode()
                 for i in range(count)]
    return _names


def _features(sock: socket.socket, dev: str, blocks: int) -> list[tuple[int, ...]]:
    """(available, requested, active, never_changed) bit masks, 32 features a block."""
    buf = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_GFEATURES, blocks)
                                      + bytes(16 * blocks))
    _ethtool(sock, dev, buf)
    return [struct.unpack_from("IIII", buf.raw, 8 + 16 * i) for i in range(blocks)]


def offloads_off(sock: socket.socket, dev: str) -> None:
    names = feature_names(sock, dev)
    blocks = (len(names) + 31) // 32
    mask = [0] * blocks
    for i, name in enumerate(names):
        if any(fnmatch.fnmatchcase(name, p) for p in OFFLOADS):
            mask[i // 32] |= 1 << (i % 32)
    avail = [b[0] for b in _features(sock, dev, blocks)]
    valid = [m & a for m, a in zip(mask, avail, strict=True)]
    req = ctypes.create_string_buffer(
        struct.pack("II", ETHTOOL_SFEATURES, blocks)
        + b"".join(struct.pack("II", v, 0) for v in valid))
    _ethtool(sock, dev, req)
    active = [b[2] for b in _features(sock, dev, blocks)]
    still = [name for i, name in enumerate(names)
             if active[i // 32] & mask[i // 32] & (1 << (i % 32))]
    if still:
        raise EmulationError(f"{dev}: offloads still on: {', '.join(still)}")


def link_up(sock: socket.socket, dev: str) -> None:
    ifr = _ifreq(dev, b"")
    try:
        fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, ifr)
        (flags,) = struct.unpack_from("H", ifr, 16)
        struct.pack_into("H", ifr, 16, flags | IFF_UP)
        fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, ifr)
    except OSError as e:
        raise EmulationError(f"{dev}: link up: {e.strerror}") from None


def write_sysctls(sysctls: dict[str, str]) -> None:
    """`net.*` keys of the namespace this thread is in (values are written, not parsed)."""
    for key, value in sysctls.items():
        if not key.startswith("net.") or "/" in key or ".." in key:
            raise EmulationError(f"not a network sysctl: {key!r}")
        try:
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(value)
        except OSError as e:
            raise EmulationError(f"sysctl {key}={value}: {e.strerror}") from None


def tune(path: str, sysctls: dict[str, str], plain: list[str], up: bool = False,
         batches: Sequence[tuple[list[str], str]] = ()) -> None:
    """In the namespace at `path`: set `sysctls`, turn offloads off on devices `plain`
    (and set them up if `up`), then run each (argv, stdin text) of `batches`, e.g.
    `ip -batch -`, at once: started from the thread, they are born in the namespace
    (no `nsenter` to exec first)."""
    def work() -> None:
        write_sysctls(sysctls)
        if plain:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for dev in plain:
                    offloads_off(sock, dev)
                    if up:
                        link_up(sock, dev)
        procs = [(argv, text, subprocess.Popen(argv, stdin=subprocess.PIPE,
                                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                               text=True)) for argv, text in batches]
        errors = []
        for argv, text, p in procs:
            try:
                out, err = p.communicate(text, timeout=BATCH_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
                out, err = "", f"timed out after {BATCH_TIMEOUT_S} s"
            if p.returncode != 0:
                errors.append(f"{' '.join(argv)}: {(err or out).strip()[:400]}")
        if errors:
            raise EmulationError("; ".join(errors))

    in_netns(path, work)
