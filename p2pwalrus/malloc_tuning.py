"""Keep large freed buffers in the process instead of handing them back to the kernel.

Why: encoding, verifying and sending a blob allocate and free many buffers of megabytes
(numpy stripes, codec shards, sliver frames). glibc serves every allocation above its mmap
threshold (128 KiB, rising to at most 32 MiB) with a fresh mmap and unmaps it on free, and
trims the heap's free top beyond twice that; so each buffer's pages are faulted in again on
first touch. On this machine's virtual CPUs a page fault costs 3-5 us: `blob-id` of a
64 MiB blob at 66 shards took 202,000 faults and 0.89 s of system time for 0.51 s of user
time (1.51 s wall); with the settings below, 31,000 faults, 0.10 s system, 0.67 s wall.

How: `mallopt` through ctypes, at start-up before the heavy imports (launch.py), on glibc
only, with one malloc arena for all threads (see `apply`). A CLI command ends soon after: it
keeps everything it freed (its peak is what it needed anyway). A long-running process (node,
gateway) keeps at most LONG_RUNNING_KEEP bytes of free heap before giving memory back;
`p2pwalrus daemon` keeps more while busy and gives it back once idle (DAEMON, IdleTrim).
Nothing is done if the user set any MALLOC_* variable (glibc's own tuning wins) or
P2PWALRUS_MALLOC_TUNING=0.

Also: numpy asks the kernel for transparent huge pages (madvise) on every array of 4 MiB and
more. Where THP is `madvise` with direct compaction (this machine), the first touch of those
pages is the expensive part: a fresh process's first 64 MiB encoding at 66 shards took
0.75-0.84 s, 0.32-0.43 s of it system time, and 0.46-0.52 s (0.08-0.13 s system) with
NUMPY_MADVISE_HUGEPAGE=0; warm encodings are the same either way. `apply` sets that variable
(numpy reads it when first imported) unless the user set it or P2PWALRUS_MALLOC_TUNING=0.
"""

from __future__ import annotations

import os
import sys

# glibc's mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

MIB = 1 << 20
# mallopt takes a C int: every value stays below 2 GiB.
SHORT_LIVED = {"mmap_threshold": 1024 * MIB, "trim_threshold": 1024 * MIB, "top_pad": 256 * MIB}
LONG_RUNNING_KEEP = 256 * MIB
LONG_RUNNING = {"mmap_threshold": 512 * MIB, "trim_threshold": LONG_RUNNING_KEEP, "top_pad": 64 * MIB}
# `p2pwalrus daemon` works in bursts of whole blobs (a 64 MiB store frees about 300 MiB):
# it keeps what it freed while busy and gives it back once idle (`trim`, daemon_cli.py).
# With LONG_RUNNING it gave most of it back after every store and faulted it in again on the
# next: 0.2-0.45 s of system time per 64 MiB store.
DAEMON = {"mmap_threshold": 512 * MIB, "trim_threshold": 1536 * MIB, "top_pad": 64 * MIB}

_applied: dict[str, int] | None = None


def wanted(environ=os.environ) -> bool:
    if environ.get("P2PWALRUS_MALLOC_TUNING", "1") == "0":
        return False
    return not any(k.startswith("MALLOC_") for k in environ)


def apply(long_running: bool, environ=os.environ, settings: dict[str, int] | None = None) -> dict[str, int] | None:
    """Set the thresholds (`settings`, else SHORT_LIVED or LONG_RUNNING); returns what was
    set, or None if nothing was (not glibc, turned off, or the user's MALLOC_* settings)."""
    global _applied
    if environ.get("P2PWALRUS_MALLOC_TUNING", "1") != "0":
        environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")  # before numpy is imported (see above)
    if _applied is not None or not sys.platform.startswith("linux") or not wanted(environ):
        return _applied
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt, nothing to tune
        return None
    settings = settings or (LONG_RUNNING if long_running else SHORT_LIVED)
    # One arena: a worker thread's arena is made of 64 MiB heaps, so a larger buffer there
    # (a 64 MiB blob's, encoded in a worker thread) was mapped afresh and unmapped on free
    # whatever the thresholds: 31,000 page faults for every 32 MiB encoding after the first,
    # 5 with one arena. Our threads take turns on the GIL: little contention on its lock.
    # The mmap threshold next: setting it turns off glibc's dynamic adjustment, which
    # would otherwise move the trim threshold again.
    ok = (mallopt(_M_ARENA_MAX, 1)
          and mallopt(_M_MMAP_THRESHOLD, settings["mmap_threshold"])
          and mallopt(_M_TRIM_THRESHOLD, settings["trim_threshold"])
          and mallopt(_M_TOP_PAD, settings["top_pad"]))
    _applied = dict(settings) if ok else None
    return _applied


def trim() -> bool:
    """Give the kernel back the free memory this process keeps (glibc's malloc_trim(0)), if
    these settings were applied; whether anything was returned."""
    if _applied is None:
        return False
    import ctypes

    return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))


class IdleTrim:
    """When to `trim`: once the process has been idle for `idle` seconds of wall clock
    (less than `quiet` CPU seconds spent) after at least `busy` CPU seconds of work since the
    last trim. Fed (wall time, process CPU time) samples; pure, so it is tested as is."""

    def __init__(self, idle: float = 20.0, quiet: float = 0.2, busy: float = 1.0):
        self.idle, self.quiet, self.busy = idle, quiet, busy
        self._since_trim: float | None = None  # CPU time at the last trim (or start)
        self._last_active: tuple[float, float] | None = None  # (wall, cpu) when last seen working

    def due(self, wall: float, cpu: float) -> bool:
        if self._since_trim is None:
            self._since_trim, self._last_active = cpu, (wall, cpu)
            return False
        last_wall, last_cpu = self._last_active
        if cpu - last_cpu >= self.quiet:  # working: the idle clock starts again
            self._last_active = (wall, cpu)
            return False
        if wall - last_wall < self.idle or cpu - self._since_trim < self.busy:
            return False
        self._since_trim, self._last_active = cpu, (wall, cpu)
        return True
