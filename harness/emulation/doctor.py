"""`python -m harness.doctor`: what this machine offers the harness, and what `auto` picks.

Every kernel feature is probed by using it in a throwaway namespace, since a
module that is listed is not always one that works.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys

from harness.emulation.cgroups import cgroup_version
from harness.emulation.ledger import CGROUP_ROOT

QDISCS = {
    "htb": ["htb", "default", "1"],
    "tbf": ["tbf", "rate", "1mbit", "burst", "32kbit", "latency", "50ms"],
    "netem": ["netem", "delay", "1ms"],
    "pfifo": ["pfifo", "limit", "100"],
    "fq_codel": ["fq_codel"],
}


def _ok(argv: list[str]) -> tuple[bool, str]:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    return p.returncode == 0, (p.stderr or p.stdout).strip().splitlines()[0] if (
        p.stderr or p.stdout).strip() else "ok"


def probe() -> dict:
    out: dict = {"root": os.geteuid() == 0}
    out["tools"] = {t: shutil.which(t) for t in
                    ("mnexec", "nsenter", "ip", "tc", "nft", "ethtool", "iperf3", "ping",
                     "docker", "nvidia-smi")}
    ns = f"hxdoctor{secrets.token_hex(2)}"
    qd: dict = {}
    nft = False
    if out["root"] and out["tools"]["ip"]:
        ok, _ = _ok(["ip", "netns", "add", ns])
        if ok:
            try:
                for kind, args in QDISCS.items():
                    ok, why = _ok(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo",
                                   "root", *args])
                    qd[kind] = ok if ok else why
                    _ok(["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", "lo", "root"])
                nft, _ = _ok(["ip", "netns", "exec", ns, "nft", "add", "table", "inet", "probe"])
            finally:
                _ok(["ip", "netns", "del", ns])
    out["qdiscs"] = qd
    out["netem"] = qd.get("netem") is True
    out["nftables"] = nft
    ver = cgroup_version()
    out["cgroups"] = {"version": ver}
    if ver == 1:
        out["cgroups"]["controllers"] = sorted(c for c in ("cpu", "cpuacct", "memory", "pids",
                                                           "freezer") if (CGROUP_ROOT / c).is_dir())
    elif ver == 2:
        out["cgroups"]["controllers"] = (CGROUP_ROOT / "cgroup.controllers").read_text().split()
    from harness.emulation.backends.docker import engine

    out["docker"] = engine.describe()
    out["docker_daemon"] = out["docker"]["daemon"]
    gpus: list[str] = []
    if out["tools"]["nvidia-smi"]:
        ok, _ = _ok(["nvidia-smi", "-L"])
        if ok:
            gpus = subprocess.run(["nvidia-smi", "-L"], capture_output=True,
                                  text=True).stdout.splitlines()
    out["gpus"] = gpus
    out["auto_shaper"] = "netem" if out["netem"] else "userspace"
    problems = []
    if not out["root"]:
        problems.append("not root: the harness needs root for namespaces, tc and cgroups")
    # ethtool is not among them: the harness sets offloads itself (netdev.py); only the tests
    # and a user at the CLI use it.
    for t in ("mnexec", "nsenter", "ip", "tc", "nft"):  # nsenter: util-linux
        if not out["tools"][t]:
            problems.append(f"{t} missing: run `make setup`")
    if out["root"] and qd.get("htb") is not True:
        problems.append("htb qdisc unavailable: bandwidth cannot be shaped")
    if ver is None:
        problems.append("no cgroup hierarchy: CPU limits and throttle faults unavailable")
    out["problems"] = problems
    return out


def render(info: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="harness doctor", show_header=True)
    t.add_column("check")
    t.add_column("result")

    def yn(v: object) -> str:
        return "[green]yes[/]" if v is True else f"[red]no[/] {v if v is not False else ''}"

    t.add_row("root", yn(info["root"]))
    for tool, path in info["tools"].items():
        t.add_row(f"tool {tool}", path or "[red]missing[/]")
    for kind, ok in info["qdiscs"].items():
        t.add_row(f"qdisc {kind}", yn(ok))
    t.add_row("nftables in a namespace", yn(info["nftables"]))
    cg = info["cgroups"]
    t.add_row("cgroups", f"v{cg['version']} {' '.join(cg.get('controllers', []))}"
              if cg["version"] else "[red]none[/]")
    d = info["docker"]
    t.add_row("docker daemon", f"[green]yes[/] {d['version']}, cgroup driver "
              f"{d['cgroup_driver']}" if d["daemon"] else f"[red]no[/] {d['why']}")
    if d["daemon"]:
        t.add_row("docker runtimes", " ".join(d["runtimes"]) + (
            "" if d["gpu_runtime"] else " [yellow](no GPU runtime: nodes with gpus need "
            "backend.gpu=prefer)[/]"))
        t.add_row("docker images", "\n".join(
            f"{tag} {v['size_mb']} MB" + (f" ({v['code']})" if v["code"] else "")
            for tag, v in d["images"].items()) or "[red]none[/]: make images")
        t.add_row("run containers", " ".join(d["run_containers"]) or "none")
    t.add_row("GPUs", "\n".join(info["gpus"]) or "none")
    t.add_row("shaper=auto picks", f"[bold]{info['auto_shaper']}[/]" + (
        "" if info["netem"] else " (no netem: delay/jitter/loss by the userspace delay line)"))
    console = Console()
    console.print(t)
    for p in info["problems"]:
        console.print(f"[red]problem:[/] {p}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.doctor", description=__doc__)
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    info = probe()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        render(info)
    return 1 if info["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
