"""`python -m harness.emulation.reap PREFIX`: remove one run's leftovers from a process of
its own, for a host agent whose coordinator is gone (its lease ran out).

The agent cannot do it itself: removing the run's processes stops the Ray node it runs
under, and Ray ends the agent with it, halfway. This process leaves the run's cgroups
first (it was started inside one), so that it is not among what it removes and the
cgroups can go.
"""

from __future__ import annotations

import os
import sys

from harness.emulation.inventory import PREFIX_RE, cgroup_dirs
from harness.emulation.ledger import remove_run


def leave_cgroups(prefix: str) -> None:
    me = str(os.getpid())
    for d in cgroup_dirs(prefix):
        for sub in [d, *d.rglob("*")]:
            procs = sub / "cgroup.procs"
            try:
                if procs.is_file() and me in procs.read_text().split():
                    (d.parent / "cgroup.procs").write_text(me)
            except OSError:
                continue


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1 or not PREFIX_RE.fullmatch(args[0]):
        print("usage: python -m harness.emulation.reap PREFIX (hx + 6 hex digits)",
              file=sys.stderr)
        return 2
    leave_cgroups(args[0])
    remove_run(args[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
