"""The delay-line process: `python -m harness.emulation.shapers.delayline`, started by
the userspace shaper in the run's wire namespace. It takes real-time priority and a
1 ns timer slack, answers `protocol.READY`, then runs the line until `quit`, EOF on
stdin or SIGTERM, and closes its sockets on the way out."""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import signal
import sys
from typing import Any

from harness.emulation.shapers.delayline import __doc__ as OVERVIEW
from harness.emulation.shapers.delayline import protocol
from harness.emulation.shapers.delayline.line import DelayLine

PR_SET_TIMERSLACK = 29
RT_PRIORITY = 10  # with CPU hogs, release lateness p99 was ~6 ms without it, ~0.2 ms with


def _reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(protocol.encode(obj))
    sys.stdout.flush()


def _on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog=f"python -m {protocol.MODULE}",
        description=f"{OVERVIEW}\n{protocol.__doc__}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--rt-priority",
        type=int,
        default=RT_PRIORITY,
        metavar="N",
        help="SCHED_FIFO priority, 0 for normal scheduling (default %(default)s)",
    )
    args = ap.parse_args(argv)
    if args.rt_priority > 0:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(args.rt_priority))
        except OSError as e:
            print(
                f"delayline: no realtime priority ({e.strerror}); timing will suffer on busy CPUs",
                file=sys.stderr,
            )
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:  # the default 50 us timer slack would add to every release
        ctypes.CDLL(None).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    dl = DelayLine()
    gc.freeze()  # else a full collection over start-up objects stalls the loop ~5 ms
    try:
        _reply(protocol.READY)
        dl.run(_reply)
    except BrokenPipeError:  # the parent is gone; don't fail again flushing at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        dl.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
