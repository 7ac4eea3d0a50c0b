"""Userspace delay line: netem-like delay, jitter and loss between veth pairs.

The kernel here has no sch_netem, so a process, run inside a dedicated "wire"
network namespace, bridges pairs of interfaces with AF_PACKET raw sockets and
holds each frame in a time-ordered heap until its release time. It is
transparent to any Ethernet traffic (ARP, TCP, UDP, ...). Turn offloads off as
``ethtool -K IF tso off gso off gro off tx off`` does, on both ends of each veth
(the harness does it with ioctls: ``harness.emulation.netdev``); ``tx off`` on
the hosts' ends is required: with checksum offload the sender leaves checksums
unfilled and the far host drops what we re-send (nothing gets through). It also
stops TSO/GSO super-frames, which exceed the MTU and fail to send
(``err_frames``).

Three parts, none importing anything from the harness outside this package (the
process starts fast, with no dependencies in its hot path, in the wire namespace):

* ``protocol``: what a link is (its properties and their limits), the control
  messages and their parsing, the counters a ``stats`` reply carries. Pure: the
  host side (``harness.emulation.shapers.userspace``) builds its messages with it.
* ``line``: the links, the release heap and the single-threaded event loop.
* ``__main__``: the process (``python -m harness.emulation.shapers.delayline``):
  real-time priority, timer slack, signals, the control lines on stdin.

Semantics, per link and direction:

* ``fwd``: frames arriving on interface ``a`` leave on ``b``; ``rev``: frames
  arriving on ``b`` leave on ``a``.
* ``delay_ms``: one-way delay. ``jitter_ms``: each frame's delay is uniform in
  [delay - jitter, delay + jitter], clamped at 0 (netem ``delay D J`` without
  a distribution table), so frames may reorder as in netem.
* ``loss_pct``: independent per-frame drop probability, in percent.
* ``up``: false drops every arriving frame (a powered-off peer; carrier up).
* A ``set`` applies to frames read after it (normally microseconds after
  they arrive); frames already queued keep their release time and are still
  delivered.
* Loss and jitter draw from a ``random.Random`` per direction seeded with
  ``"<seed>/fwd"`` or ``"<seed>/rev"``, so runs are reproducible.

Timing: a delay counts from the kernel's arrival timestamp (SO_TIMESTAMPNS),
not from when this process read the frame. Waits use select(), whose float
timeout has microsecond resolution (epoll rounds up to whole ms, and
sleeping the remainder would delay reads), with timer slack 1 ns, waking
SPIN_S early and polling until due. gc.freeze() after start-up avoids ~5 ms
collections. SCHED_FIFO (``--rt-priority N``, default 10, 0 = off) keeps
busy CPUs from delaying the line, as netem in softirq is not delayed.
Queued frames have no limit (netem's default is 1000); the kernel receive
buffer (SOCK_BUF) overflows only when this process is the bottleneck.
"""
