"""What the live delay-line tests share: two hosts joined through a delay line in real
namespaces (root), an echo server on h2, and the probes that time datagrams through it.

The probes measure the line, not their own scheduling: realtime priority (as the
line has) and the reply's kernel arrival time. `Topo.reference` runs the same
probe over h2's loopback, so a test can tell the line's delay from the machine's
load. The `topo` fixture reaches test modules as a conftest plugin.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.delayline_proc import Proc

H1_IP, H2_IP, ECHO_PORT = "10.9.0.1", "10.9.0.2", 9000


# ------------------------------------------------------------ real namespaces

# The probe tools measure the line, not their own scheduling: realtime priority
# (as the line has), and the reply's kernel arrival time rather than our wake-up.
RT = """
import os
try:
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(5))
except OSError:
    pass
"""

ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
while True:
    data, addr = s.recvfrom(65536)
    s.sendto(data, addr)
"""

# Send COUNT numbered datagrams at INTERVAL s, record send time and RTT of each echo.
PROBE = """
import json, select, socket, struct, sys, time
host, port, count, interval, wait = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    float(sys.argv[4]), float(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((host, port))
s.setblocking(False)
s.setsockopt(socket.SOL_SOCKET, 35, 1)  # SO_TIMESTAMPNS
off = time.time_ns() - time.monotonic_ns()
sent, rtt, i, pad = [], {}, 0, bytes(60)
t0 = time.monotonic()
while True:
    now = time.monotonic()
    if i < count and now >= t0 + i * interval:
        sent.append(time.monotonic())  # before send: the wakeup it causes may preempt us
        s.send(i.to_bytes(4, "big") + pad)
        i += 1
        continue
    end = sent[-1] + wait if i == count else t0 + i * interval
    if i == count and (len(rtt) == count or now >= end):
        break
    if select.select([s], [], [], max(0.0, end - now))[0]:
        while True:
            try:
                data, anc, _, _ = s.recvmsg(65536, 64)
            except (BlockingIOError, ConnectionRefusedError):
                break
            sec, nsec = struct.unpack("qq", anc[0][2])
            k = int.from_bytes(data[:4], "big")
            rtt[k] = ((sec * 10**9 + nsec - off) * 1e-9 - sent[k]) * 1000.0
print(json.dumps({"sent": sent, "rtt": [rtt.get(k) for k in range(count)]}))
"""


def sh(cmd: str, timeout: float = 30) -> str:
    """Run a whitespace-separated command line (no shell), return its stdout."""
    run = subprocess.run(cmd.split(), check=True, capture_output=True, text=True, timeout=timeout)
    return run.stdout


@dataclass
class Topo:
    h1: str
    h2: str
    wire: str
    a: str
    b: str
    dl: Proc | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def set(self, **props: Any) -> None:
        assert self.dl is not None
        props.setdefault("dir", "both")
        assert self.dl.cmd({"op": "set", "link": "l0", **props}) == {"ok": True}

    def stats(self) -> dict[str, Any]:
        assert self.dl is not None
        return self.dl.cmd({"op": "stats"})["links"]["l0"]

    def probe_start(self, count: int, interval: float, wait: float = 0.5,
                    ns: str | None = None) -> subprocess.Popen[str]:
        """Probe h2's echo from `ns` (default h1: through the delay line)."""
        args = f"{H2_IP} {ECHO_PORT} {count} {interval} {wait}".split()
        argv = ["ip", "netns", "exec", ns or self.h1, sys.executable, "-c", RT + PROBE, *args]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)

    def probe(self, count: int, interval: float, wait: float = 0.5) -> tuple[list[float], list]:
        out, _ = self.probe_start(count, interval, wait).communicate(timeout=60)
        res = json.loads(out)
        return res["sent"], res["rtt"]

    def reference(self, count: int, interval: float) -> list[float]:
        """The same probe and echo talking over h2's loopback, without the delay line: how
        much the machine's load alone delays these two processes right now."""
        out, _ = self.probe_start(count, interval, ns=self.h2).communicate(timeout=60)
        return json.loads(out)["rtt"]


def _ns_setup(t: Topo) -> None:
    for ns in (t.h1, t.h2, t.wire):
        sh(f"ip netns add {ns}")
    for host, hif, wif, ip in ((t.h1, "h1-eth0", t.a, H1_IP), (t.h2, "h2-eth0", t.b, H2_IP)):
        # Created directly inside the namespaces, so names can't clash with the host's.
        sh(f"ip link add {hif} netns {host} type veth peer name {wif} netns {t.wire}")
        sh(f"ip -n {host} addr add {ip}/24 dev {hif}")
        for ns, dev in ((host, hif), (host, "lo"), (t.wire, wif)):
            sh(f"ip -n {ns} link set {dev} up")
            # tx off is what matters (checksums); the kernel then can't do TSO/GSO either.
            sh(f"ip netns exec {ns} ethtool -K {dev} tso off gso off gro off tx off")


@pytest.fixture(scope="module")
def topo():
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces and veths")
    if not (shutil.which("ip") and shutil.which("ethtool")):
        pytest.skip("needs iproute2 and ethtool")
    pfx = "dlt" + secrets.token_hex(3)
    t = Topo(f"{pfx}-h1", f"{pfx}-h2", f"{pfx}-w", f"{pfx}-a", f"{pfx}-b")
    try:
        _ns_setup(t)
        t.dl = Proc(["ip", "netns", "exec", t.wire, sys.executable, "-m",
                     "harness.emulation.shapers.delayline"])
        assert t.dl.cmd({"op": "add", "link": "l0", "a": t.a, "b": t.b, "seed": 1}) == {"ok": True}
        t.procs.append(
            subprocess.Popen(
                ["ip", "netns", "exec", t.h2, sys.executable, "-c", RT + ECHO, str(ECHO_PORT)]
            )
        )
        time.sleep(0.3)  # echo server binding
        t.probe(5, 0.01)  # resolve ARP through the line
        yield t
    finally:
        try:
            for p in t.procs:
                p.kill()
                p.wait()
            if t.dl is not None:
                t.dl.stop()
        finally:  # deleting a namespace also deletes its veths
            for ns in (t.h1, t.h2, t.wire):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
