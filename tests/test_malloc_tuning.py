"""malloc_tuning: freed large buffers stay in the process, so encoding again costs no page
faults; the user's own MALLOC_* settings and P2PWALRUS_MALLOC_TUNING=0 turn it off."""

import os
import subprocess
import sys

import pytest

from p2pwalrus import malloc_tuning

# A child that encodes a 32 MiB blob at 66 shards in a worker thread, as the CLI's
# BackgroundEncoding does, and prints the minor page faults of that encoding.
_CHILD = r"""
import resource, sys, threading
import numpy as np
from p2pwalrus import launch, malloc_tuning
launch._tune_malloc(sys.argv[1:])
from p2pwalrus.core import rs2
print(malloc_tuning._applied)
blob = np.random.default_rng(1).integers(0, 256, 32 << 20, dtype=np.uint8)
rs2.encode_blob(blob, 66)  # the first encoding faults its pages in; the second is counted
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
worker = threading.Thread(target=rs2.encode_blob, args=(blob, 66))
worker.start()
worker.join()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _run_child(env_extra: dict, *args: str) -> tuple[str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "P2PWALRUS_MALLOC_TUNING"}
    env["NUMPY_MADVISE_HUGEPAGE"] = "0"  # 4 KiB pages in every child: only malloc's settings differ
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", _CHILD, *args], env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout.split("\n")
    return out[0], int(out[1])


def test_wanted_unless_the_user_tunes_malloc_or_turns_it_off():
    assert malloc_tuning.wanted({})
    assert not malloc_tuning.wanted({"MALLOC_ARENA_MAX": "2"})
    assert not malloc_tuning.wanted({"P2PWALRUS_MALLOC_TUNING": "0"})


def test_settings_fit_mallopts_int():
    for settings in (malloc_tuning.SHORT_LIVED, malloc_tuning.LONG_RUNNING):
        assert all(0 < v < 2**31 for v in settings.values())


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
                    reason="mallopt is glibc's")
def test_an_encoding_reuses_its_freed_buffers_instead_of_faulting_in_new_ones():
    applied, tuned = _run_child({}, "store", "f")
    assert applied == str(malloc_tuning.SHORT_LIVED)
    off, untuned = _run_child({"P2PWALRUS_MALLOC_TUNING": "0"}, "store", "f")
    assert off == "None"
    node_settings, node_faults = _run_child({}, "node")
    assert node_settings == str(malloc_tuning.LONG_RUNNING)
    # A second encoding in a worker thread, measured: 31,000 faults untuned (its buffers mapped
    # afresh, in the thread's arena of 64 MiB heaps), 5 tuned, for a CLI command and a node alike.
    assert 10 * tuned < untuned
    assert 10 * node_faults < untuned


_HUGEPAGE_CHILD = r"""
import os, sys
from p2pwalrus import launch
launch._tune_malloc(sys.argv[1:])
import numpy
print(os.environ.get("NUMPY_MADVISE_HUGEPAGE"), numpy._core.multiarray._get_madvise_hugepage())
"""


@pytest.mark.parametrize("env, expected", [
    ({}, "0 False"),  # ours: no huge pages asked for numpy's arrays
    ({"NUMPY_MADVISE_HUGEPAGE": "1"}, "1 True"),  # the user's choice stands
    ({"P2PWALRUS_MALLOC_TUNING": "0"}, "None True"),  # tuning off: numpy's default
])
def test_numpy_asks_no_huge_pages_unless_the_user_says_so(env, expected):
    base = {k: v for k, v in os.environ.items()
            if k not in ("NUMPY_MADVISE_HUGEPAGE", "P2PWALRUS_MALLOC_TUNING")}
    out = subprocess.run([sys.executable, "-c", _HUGEPAGE_CHILD, "store", "f"], env=base | env,
                         capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert out == expected


def test_idle_trim_waits_for_work_then_for_quiet():
    when = malloc_tuning.IdleTrim(idle=20.0, quiet=0.2, busy=1.0)
    assert not when.due(0.0, 5.0)  # the first sample only sets the clocks
    assert not when.due(30.0, 5.1)  # idle, but no work since the start: nothing to give back
    assert not when.due(35.0, 8.0)  # a burst of stores
    assert not when.due(40.0, 8.5)  # still busy
    assert not when.due(55.0, 8.6)  # quiet for 15 s only
    assert when.due(61.0, 8.6)  # quiet for 21 s after 3.6 CPU seconds of work: trim
    assert not when.due(90.0, 8.7)  # and not again until there has been work again
    assert not when.due(95.0, 10.0)
    assert when.due(116.0, 10.1)


def test_the_daemon_keeps_more_freed_memory_than_other_long_running_commands():
    applied, _ = _run_child({}, "daemon")
    assert applied == str(malloc_tuning.DAEMON)
    assert malloc_tuning.DAEMON["trim_threshold"] > malloc_tuning.LONG_RUNNING["trim_threshold"]
    assert all(0 < v < 2**31 for v in malloc_tuning.DAEMON.values())
