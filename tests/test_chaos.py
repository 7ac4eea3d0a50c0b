"""Kill trials (`make chaos` runs 50): the machine inventory sees what a run leaves, and
`harness.clean` after a kill -9 leaves nothing of it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from harness.selftest import chaos, inventory
from tests.helpers import root_only

pytestmark = [pytest.mark.needs_root, root_only]


def test_the_inventory_sees_what_has_no_run_prefix(tmp_path: Path) -> None:
    """Created between two snapshots under names cleanup would not look for."""
    before = inventory.snapshot()
    name = f"chaostest{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    holder = None
    try:
        subprocess.run(["ip", "link", "add", name[:15], "type", "veth", "peer", "name",
                        f"p{name}"[:15]], check=True)
        cg = inventory.CGROUP_ROOT / name
        cg.mkdir()
        holder = subprocess.Popen(["ip", "netns", "exec", name, "sleep", "30"])
        subprocess.run(["ip", "netns", "exec", name, "true"], check=True)
        new = inventory.new_items(before, inventory.snapshot())
        assert name in new["netns"]
        assert name[:15] in new["links"]
        assert name in new["cgroups"]
        assert any(p.startswith(f"{holder.pid}:") for p in new["processes"]), new
        assert any(name in m for m in new["mounts"]), new
    finally:
        if holder:
            holder.kill()
            holder.wait()
        subprocess.run(["ip", "link", "del", name[:15]], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        if (inventory.CGROUP_ROOT / name).exists():
            (inventory.CGROUP_ROOT / name).rmdir()
    assert inventory.new_items(before, inventory.snapshot()) == {}


def test_a_run_killed_mid_fault_leaves_nothing_after_clean(tmp_path: Path) -> None:
    t = chaos.run_trial(chaos.Trial(1, "mininet", "faults", 0.2), tmp_path)
    assert t.killed and t.landed == "faults", (t.killed, t.landed)
    assert t.prefix and f"cleaned {t.prefix}" in t.clean_output, t.clean_output
    assert t.leftovers == {}, t.leftovers


def test_without_clean_the_trial_reports_the_kill_s_leftovers(tmp_path: Path) -> None:
    """The check can fail: skip the clean-up and the orphans are found (then removed).
    Killed mid-fault: the stages, forked by a zygote that leaves with the run, are up."""
    t = chaos.run_trial(chaos.Trial(2, "mininet", "faults", 0.2), tmp_path, clean=["true"])
    try:
        assert t.killed and t.prefix
        assert {"netns", "processes", "state_files"} <= set(t.leftovers), t.leftovers
        assert f"{t.prefix}.json" in t.leftovers["state_files"]
    finally:
        subprocess.run(chaos.CLEAN, capture_output=True, timeout=300)


def test_a_run_that_never_starts_is_no_trial(tmp_path: Path) -> None:
    """Bad input (here an unknown backend; in practice a stale image) ends the chaos run
    with the reason instead of counting 'clean' trials that killed nothing."""
    with pytest.raises(chaos.TrialError, match="did not start a run: config error: .*backend"):
        chaos.run_trial(chaos.Trial(3, "nosuch", "setup", 0.0), tmp_path)
