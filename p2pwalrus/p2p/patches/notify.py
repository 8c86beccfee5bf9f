"""Stream notifications without the no-op notifees (fast path patch 11), for py-libp2p 0.8.1's Swarm.

What: ``Swarm.notify_opened_stream`` and ``notify_closed_stream`` call only the notifees whose
``opened_stream`` / ``closed_stream`` does something. The library's own three notifees
(``PubsubNotifee``, ``TagStoreNotifee``, ``BasicHost``'s ``_IdentifyNotifee``) do nothing on
streams; any other notifee (ours, a test's) is still called, in the order registered.

Why: ``Swarm._notify`` opens a nursery and starts one task per notifee for every stream
opened and every stream closed, whatever the notifees do with it: 7% of the CPU of 100
nodes joining one in-process network (every heartbeat link, pull, identify, DHT query and
GossipSub stream is two notifications). Nothing reaches the wire.

Pinned to libp2p 0.8.1: applied only by ``fastpath.enable()``, which checks the version.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

_originals: dict[str, Any] = {}


def _library_noops() -> set:
    from libp2p.host.basic_host import _IdentifyNotifee
    from libp2p.network.tag_store import TagStoreNotifee
    from libp2p.pubsub.pubsub_notifee import PubsubNotifee

    return {getattr(cls, name) for cls in (PubsubNotifee, TagStoreNotifee, _IdentifyNotifee)
            for name in ("opened_stream", "closed_stream")}


def patch() -> None:
    """(11) Stream notifications skip the library's no-op notifees, and with none left, the nursery."""
    from libp2p.network.swarm import Swarm

    noops = _library_noops()
    _originals.update(opened=Swarm.notify_opened_stream, closed=Swarm.notify_closed_stream)

    def make(method: str):
        async def notify(self: Any, stream: Any) -> None:
            for notifee in list(self.notifees):
                if getattr(type(notifee), method, None) in noops:
                    continue
                try:  # as Swarm._notify: a raising notifee does not reach the stream's owner
                    await getattr(notifee, method)(self, stream)
                except Exception:
                    logger.exception("Notifee %s.%s raised", type(notifee).__name__, method)

        notify.__name__ = f"notify_{method}"
        return notify

    Swarm.notify_opened_stream = make("opened_stream")
    Swarm.notify_closed_stream = make("closed_stream")


def unpatch() -> None:
    from libp2p.network.swarm import Swarm

    Swarm.notify_opened_stream = _originals["opened"]
    Swarm.notify_closed_stream = _originals["closed"]
