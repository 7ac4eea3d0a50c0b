"""`hosts=emulated`: hosts h1..hN on this machine, so that a run across hosts can be tried
and tested with one machine.

Each host is a network namespace (`<prefix>h1`...) with one interface, `lan0`, on a
shared LAN: a bridge in the LAN's own namespace (`<prefix>lan`). Every host's access
to the bridge passes through the userspace delay line (in that namespace too), half
of `lan_delay_ms` each way, so two hosts are `lan_delay_ms` apart one way. The
coordinator (this process's namespace) reaches the LAN over one more veth
(`<prefix>c`), unshaped, with the LAN's last address; nothing routes the LAN anywhere
else (no default route, no NAT), so its traffic stays on this machine.

Everything carries the run's prefix (namespaces, the root-side veth, the processes'
`HARNESS_RUN` mark), so the run's teardown and `python -m harness.clean` remove it with
the rest of the run.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import zlib
from dataclasses import dataclass

from harness.emulation import netdev
from harness.emulation.ledger import Ledger
from harness.emulation.shapers.delayline import protocol
from harness.emulation.shapers.userspace import DelayLine
from harness.emulation.tc import EmulationError, run
from harness.hosts.config import HostsConfig
from harness.hosts.placer import HostInfo

LAN_POOL = ipaddress.ip_network("172.31.0.0/16")  # one /24 of it per run, unused here


def machine_mem_mb() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 0


def emulated_hosts(cfg: HostsConfig) -> list[HostInfo]:
    """The hosts `hosts=emulated` makes: each offers this machine (they share it)."""
    cpus, mem = float(os.cpu_count() or 1), machine_mem_mb()
    return [HostInfo(name, cpus, mem, 0) for name in cfg.emulated_names()]


def pick_subnet(prefix: str, avoid: ipaddress.IPv4Network | None = None
                ) -> ipaddress.IPv4Network:
    """A /24 of LAN_POOL no route of this machine overlaps, nor `avoid` (first try: by the
    prefix, so two runs at once take different ones)."""
    routes = json.loads(subprocess.run(["ip", "-j", "-4", "route", "show", "table", "all"],
                                       capture_output=True, text=True, check=True).stdout)
    taken = [avoid] if avoid is not None else []
    for r in routes:
        dst = r.get("dst", "")
        if dst and dst not in ("default",) and dst[0].isdigit():
            taken.append(ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False))
    subnets = list(LAN_POOL.subnets(new_prefix=24))
    start = zlib.crc32(prefix.encode()) % len(subnets)
    for k in range(len(subnets)):
        net = subnets[(start + k) % len(subnets)]
        if not any(net.overlaps(t) for t in taken):
            return net
    raise EmulationError(f"no free /24 in {LAN_POOL} for the emulated hosts' LAN")


@dataclass
class LanHost:
    name: str
    netns: str
    address: str  # on lan0, the shaped LAN: control (Ray, the agents)
    data_address: str = ""  # on lan1, the unshaped leg the tunnels take


class EmulatedLan:
    """The namespaces, the bridge and the shaped access links of `hosts=emulated`."""

    def __init__(self, cfg: HostsConfig, ledger: Ledger) -> None:
        self.cfg, self.ledger, self.prefix = cfg, ledger, ledger.prefix
        self.lan_ns = f"{self.prefix}lan"
        self.coord_dev = f"{self.prefix}c"
        self.hosts: list[LanHost] = []
        self.coordinator = ""
        self.subnet: ipaddress.IPv4Network | None = None
        self.line: DelayLine | None = None

    def start(self) -> None:
        self.subnet = pick_subnet(self.prefix)
        self.data_subnet = pick_subnet(self.prefix + "data", avoid=self.subnet)
        addrs, data = list(self.subnet.hosts()), list(self.data_subnet.hosts())
        self.coordinator = str(addrs[-1])
        mtu = str(self.cfg.lan_mtu)
        run(["ip", "netns", "add", self.lan_ns])
        cmds = [["link", "add", "br0", "mtu", mtu, "type", "bridge"], ["link", "set", "lo", "up"]]
        for i, name in enumerate(self.cfg.emulated_names()):
            ns = f"{self.prefix}{name}"
            run(["ip", "netns", "add", ns])
            self.hosts.append(LanHost(name, ns, str(addrs[i]), str(data[i])))
            # host lan0 <-> a (delay line) | b <-> p (bridge port)
            cmds += [["link", "add", f"{name}a", "mtu", mtu, "type", "veth", "peer", "name",
                      "lan0", "mtu", mtu, "netns", ns],
                     ["link", "add", f"{name}b", "mtu", mtu, "type", "veth", "peer", "name",
                      f"{name}p", "mtu", mtu],
                     ["link", "set", f"{name}p", "master", "br0"],
                     ["link", "set", f"{name}p", "up"],
                     # the data leg: host lan1 <-> q (bridge port), no delay line: the
                     # tunnels' frames cross in the kernel, and each carried link's
                     # sending host adds the LAN's delay in its own line
                     ["link", "add", f"{name}q", "mtu", mtu, "type", "veth", "peer", "name",
                      "lan1", "mtu", mtu, "netns", ns],
                     ["link", "set", f"{name}q", "master", "br0"],
                     ["link", "set", f"{name}q", "up"]]
        cmds.append(["link", "set", "br0", "up"])
        run(["ip", "-n", self.lan_ns, "-batch", "-"], input="".join(" ".join(c) + "\n"
                                                                   for c in cmds))
        # the coordinator's leg: created here, its peer moved into the LAN's namespace
        run(["ip", "link", "add", self.coord_dev, "mtu", mtu, "type", "veth", "peer", "name",
             "cp", "mtu", mtu, "netns", self.lan_ns])
        run(["ip", "-n", self.lan_ns, "link", "set", "cp", "master", "br0", "up"])
        run(["ip", "addr", "add", f"{self.coordinator}/24", "dev", self.coord_dev])
        run(["ip", "link", "set", self.coord_dev, "up"])
        # Offloads off wherever a frame starts or crosses the delay line: a packet socket
        # forwards a TCP segment with its checksum left to a NIC that is not there
        # (ping passed, TCP did not)
        quiet = {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}
        # two legs on one bridge: each answers ARP for its own address only (by default
        # the unshaped leg answered for the shaped one's too, and took its traffic)
        legs = {**quiet, "net.ipv4.conf.all.arp_ignore": "1",
                "net.ipv4.conf.all.arp_announce": "2"}
        for h in self.hosts:
            netdev.tune(f"/run/netns/{h.netns}", legs, ["lan0"], up=True, batches=[(
                ["ip", "-batch", "-"], f"link set lo up\naddr add {h.address}/24 dev lan0\n"
                f"addr add {h.data_address}/24 dev lan1\nlink set lan1 up\n")])
        names = [h.name for h in self.hosts]
        netdev.tune(f"/run/netns/{self.lan_ns}", quiet,
                    [f"{n}{e}" for n in names for e in "abp"] + ["cp"], up=True)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            netdev.offloads_off(sock, self.coord_dev)
        self.line = DelayLine(self.lan_ns, self.ledger.env())
        half = protocol.DirProps(self.cfg.lan_delay_ms / 2)
        self.line.call(protocol.add_many([
            protocol.link_spec(f"lan-{n}", f"{n}a", f"{n}b", 7919 * (i + 1), half, half)
            for i, n in enumerate(names)]))

    def host(self, name: str) -> LanHost:
        return next(h for h in self.hosts if h.name == name)

    def in_host(self, name: str, argv: list[str]) -> list[str]:
        """`argv` run in host `name`'s network namespace, and only that: `ip netns exec`
        would also give it a mount namespace of its own with a fresh /sys, where the
        cgroup hierarchy (its nodes' limits) is missing."""
        return ["nsenter", f"--net=/run/netns/{self.host(name).netns}", "--", *argv]

    def stop(self) -> None:
        """The delay line; the namespaces and the veth go with the run's prefix."""
        if self.line is not None:
            self.line.stop()
            self.line = None
        for ns in [self.lan_ns, *(h.netns for h in self.hosts)]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.coord_dev], capture_output=True)
