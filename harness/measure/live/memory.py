"""Memory of each stage process: whether 100+ stages fit a small machine, and why not.

Read from /proc once the stages are ready and at the end. Three figures per
process, because they answer different questions: RSS (VmHWM, the peak
resident set) is what one stage needs on a device of its own; PSS splits each
shared page (onnxruntime's, grpc's and numpy's libraries, mapped by every
stage) between the processes mapping it, so the PSS of all stages adds up to
what they take from this machine; USS (private pages) is what one more
stage costs. The stage is found from its launcher's Popen: the process itself
(Mininet: exec'd, or forked by the zygote) or the launcher's descendant running
the stage server (`nsenter` into a container), as the host's /proc sees it.
"""

from __future__ import annotations

import statistics
from pathlib import Path

RSS_GOAL_MB = 60.0  # per stage (issue 10): a device-class budget
SERVER = b"harness.pipeline.node.server"
FORKED_SERVER = "hx-server"  # the name a stage forked by the zygote gives itself


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def stage_pid(pid: int) -> int | None:
    """The stage server: `pid` or its first descendant whose command line runs it."""
    todo = [pid]
    while todo:
        p = todo.pop(0)
        try:
            if SERVER in Path(f"/proc/{p}/cmdline").read_bytes() or \
                    Path(f"/proc/{p}/comm").read_text().strip() == FORKED_SERVER:
                return p
        except OSError:
            continue
        todo += _children(p)
    return None


def read(pid: int) -> dict | None:
    """{rss_mb, hwm_mb, pss_mb, uss_mb, shared_file_mb} of a live process, in MiB."""
    kb: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssFile"):
                kb[k] = int(v.split()[0])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            k, _, v = line.partition(":")
            if k in ("Pss", "Private_Clean", "Private_Dirty"):
                kb[k] = int(v.split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if "VmRSS" not in kb:  # a zombie
        return None
    return {"rss_mb": kb["VmRSS"] / 1024, "hwm_mb": kb.get("VmHWM", kb["VmRSS"]) / 1024,
            "pss_mb": kb.get("Pss", 0) / 1024,
            "uss_mb": (kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)) / 1024,
            "shared_file_mb": kb.get("RssFile", 0) / 1024}


def snapshot(procs: dict[str, object]) -> dict[str, dict]:
    """Stage instance key -> its memory now (instances no longer running are left out)."""
    out = {}
    for key, proc in procs.items():
        if proc.poll() is not None:
            continue
        pid = stage_pid(proc.pid)
        m = read(pid) if pid is not None else None
        if m is not None:
            out[key] = {"pid": pid, **{k: round(v, 2) for k, v in m.items()}}
    return out


def _stats(values: list[float]) -> dict:
    return {"p50": round(statistics.median(values), 2), "max": round(max(values), 2),
            "n": len(values)}


def summarize(ready: dict[str, dict], end: dict[str, dict]) -> tuple[dict, list[str]]:
    """Summary fields and warnings from the two snapshots: each instance's last reading
    (the end's, or the ready one for an instance gone by then)."""
    last = {**ready, **end}
    if not last:
        return {"stage_rss_mb": None, "stage_pss_mb": None, "stage_uss_mb": None}, []
    rss = [m["hwm_mb"] for m in last.values()]  # the peak: covers ready and the load
    pss = [m["pss_mb"] for m in last.values()]
    out = {"stage_rss_mb": {**_stats(rss),
                            "ready_p50": round(statistics.median(
                                [m["rss_mb"] for m in ready.values()]), 2) if ready else None,
                            "shared_file_p50": round(statistics.median(
                                [m["shared_file_mb"] for m in last.values()]), 2)},
           "stage_pss_mb": {**_stats(pss), "total": round(sum(pss), 1)},
           "stage_uss_mb": _stats([m["uss_mb"] for m in last.values()])}
    warnings = []
    if out["stage_rss_mb"]["max"] > RSS_GOAL_MB:
        r = out["stage_rss_mb"]
        warnings.append(
            f"stage RSS p50 {r['p50']:.0f} MiB, max {r['max']:.0f} MiB > {RSS_GOAL_MB:.0f} MiB "
            f"(shared library pages {r['shared_file_p50']:.0f} MiB of it; PSS p50 "
            f"{out['stage_pss_mb']['p50']:.0f} MiB, USS p50 {out['stage_uss_mb']['p50']:.0f} MiB)")
    return out, warnings
