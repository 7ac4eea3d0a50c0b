"""`python -m harness.clean`: remove the leftovers of harness runs whose process is gone.

Touches only what carries a run prefix (`hx` + 6 hex digits) and belongs to no
live run: never `mn -c`, never killing by name. Live runs are left alone. What
is looked for is every resource kind in the registry (`harness.emulation.inventory`):
the built-in ones and those the backend modules register when imported.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from harness.emulation import backends
from harness.emulation.inventory import seen_prefixes
from harness.emulation.ledger import load_ledgers, remove_run, state_dir


def load_backend_kinds() -> list[str]:
    """Import every backend module so the resource kinds it registers are looked for.

    A backend whose dependencies are missing here created nothing here: skipped,
    and named in the returned list.
    """
    skipped = []
    for mod in pkgutil.iter_modules(backends.__path__):
        try:
            importlib.import_module(f"{backends.__name__}.{mod.name}")
        except ImportError as e:
            skipped.append(f"{mod.name} ({e})")
    return skipped


def orphan_prefixes() -> set[str]:
    """Prefixes seen on resources or processes of this machine (every registered kind)."""
    return seen_prefixes()


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
    for why in load_backend_kinds():
        print(f"harness.emulation.cleanup: backend {why} not loaded", file=sys.stderr)
    done = clean(args.dry_run)
    for prefix, why, counts in done:
        what = ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "nothing left"
        print(f"{'would clean' if args.dry_run else 'cleaned'} {prefix} ({why}): {what}")
    if not done:
        print("no leftovers of dead harness runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
