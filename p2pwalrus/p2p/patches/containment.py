"""What the hardening boundaries share: their failure log and their per-process counters.

The boundaries themselves are in host.py (stream handlers), pubsub.py (topic validators,
``Pubsub.push_msg``) and swarm.py; ``hardening.apply()`` puts them in place. Every failure
a boundary contains is counted in ``stats`` and logged once (``LogOnce``: a flood is
summarised rather than logged line by line).

No patch of its own; like the boundaries, pinned to libp2p 0.8.1.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

from ..log_once import LogOnce

# The boundaries' records keep the logger they have always had, whichever module contains the failure.
logger = logging.getLogger("p2pwalrus.p2p.patches.hardening")

originals: dict[str, Any] = {}  # what hardening.apply() replaced (tests show the boundaries matter)


log_once = LogOnce(logger)
# Per process (an in-process testnet shares it): messages each topic's validators judged,
# and the failures contained at each boundary.
stats: collections.Counter = collections.Counter()
_stats_waiters: list = []  # trio.Events of tasks in stats_changed()


def count(key: Any) -> None:
    stats[key] += 1
    if _stats_waiters:
        waiters = list(_stats_waiters)
        _stats_waiters.clear()
        for event in waiters:
            event.set()


async def stats_changed() -> None:
    """Until ``stats`` next changes (tests and harnesses wait on it instead of polling)."""
    import trio

    event = trio.Event()
    _stats_waiters.append(event)
    await event.wait()
