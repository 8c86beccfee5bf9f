"""Keep a bad stream from a peer from stopping the node (py-libp2p 0.8.1).

An exception in a stream handler of py-libp2p's own protocols (GossipSub, Kademlia,
identify) is not caught there: it ends the connection's task group and, through it, the
host. A peer that sends one malformed GossipSub frame (``DecodeError`` in
``Pubsub.continuously_read_stream``) stopped the whole node process. ``apply()`` makes
every handler's failure end only its own stream: logged, the stream reset.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

_applied = False


def apply() -> None:
    """Idempotent: wrap ``BasicHost._swarm_stream_handler`` once per process."""
    global _applied
    if _applied:
        return
    from libp2p.host.basic_host import BasicHost

    original = BasicHost._swarm_stream_handler

    async def _swarm_stream_handler(self: Any, net_stream: Any) -> None:
        try:
            await original(self, net_stream)
        except Exception as exc:  # not Cancelled (a BaseException): shutdown goes on as before
            try:
                peer = net_stream.muxed_conn.peer_id
            except Exception:
                peer = "?"
            logger.info("stream from %s (%s) failed, reset: %r", peer, net_stream.get_protocol(), exc)
            try:
                await net_stream.reset()
            except Exception:
                pass

    BasicHost._swarm_stream_handler = _swarm_stream_handler
    _applied = True
