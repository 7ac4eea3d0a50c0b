"""`python -m harness.clean`: remove the leftovers of harness runs whose process is gone.

Touches only what carries a run prefix (`hx` + 6 hex digits) and belongs to no
live run: never `mn -c`, never killing by name. Live runs are left alone.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from harness.emulation.ledger import (
    PREFIX_RE,
    cgroup_dirs,
    load_ledgers,
    named_netns,
    nft_tables,
    remove_run,
    root_links,
    run_marks,
    state_dir,
)

FULL_PREFIX = re.compile(r"hx[0-9a-f]{6}")


def orphan_prefixes() -> set[str]:
    """Prefixes seen on resources or processes of this machine."""
    found: set[str] = set()
    names = named_netns("hx") + root_links("hx") + [t for _, t in nft_tables("hx")]
    names += [p.name for p in cgroup_dirs("hx")]
    for n in names:
        m = FULL_PREFIX.match(n)
        if m:
            found.add(m.group(0))
    found |= {mark for mark in run_marks().values() if PREFIX_RE.fullmatch(mark)}
    return found


def clean(dry_run: bool = False) -> list[tuple[str, str, dict]]:
    """(prefix, why, counts) for each run cleaned; live runs are skipped."""
    done = []
    live = set()
    for led in load_ledgers():
        if led.owner_alive():
            live.add(led.prefix)
            continue
        done.append((led.prefix, f"owner pid {led.owner_pid} is gone",
                     {} if dry_run else remove_run(led.prefix)))
    handled = live | {p for p, _, _ in done}
    for prefix in sorted(orphan_prefixes() - handled):
        if (state_dir() / f"{prefix}.json").exists():
            continue  # a run that started after we listed the state files
        done.append((prefix, "no state file", {} if dry_run else remove_run(prefix)))
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.clean", description=__doc__)
    ap.add_argument("--dry-run", action="store_true", help="list what would be removed")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("harness.emulation.cleanup: must run as root (it removes namespaces and cgroups)",
              file=sys.stderr)
        return 2
    done = clean(args.dry_run)
    for prefix, why, counts in done:
        what = ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "nothing left"
        print(f"{'would clean' if args.dry_run else 'cleaned'} {prefix} ({why}): {what}")
    if not done:
        print("no leftovers of dead harness runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
