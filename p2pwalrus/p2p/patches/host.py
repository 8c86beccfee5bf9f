"""Stream handler containment (hardening 1), for py-libp2p 0.8.1's BasicHost.

What: ``BasicHost._swarm_stream_handler`` runs the handler of every inbound stream; the
replacement catches what the handler raises, logs it once (containment.py), counts it
(``stats["stream_failed"]``) and resets that stream.

Why: an exception in a stream handler of py-libp2p's own protocols (GossipSub, Kademlia,
identify) is not caught there: it ends the connection's task group and, through it, the
host. A peer that sent one malformed GossipSub frame (``DecodeError`` in
``Pubsub.continuously_read_stream``) stopped the whole node process. Now a handler's
failure ends only its own stream. ``Cancelled`` (a BaseException) goes on as before.

Pinned to libp2p 0.8.1: applied only by ``hardening.apply()``, once per process.
"""

from __future__ import annotations

import logging
from typing import Any

from ..log_once import describe as _describe
from .containment import count, log_once, originals


def _peer_of(obj: Any) -> str:
    try:
        return str(obj.muxed_conn.peer_id)
    except Exception:
        return "?"


def contain_stream_handlers() -> None:
    from libp2p.host.basic_host import BasicHost

    original = BasicHost._swarm_stream_handler

    async def _swarm_stream_handler(self: Any, net_stream: Any) -> None:
        try:
            await original(self, net_stream)
        except Exception as exc:  # not Cancelled (a BaseException): shutdown goes on as before
            count("stream_failed")
            try:
                protocol = net_stream.get_protocol()
            except Exception:
                protocol = "?"
            log_once(f"stream:{protocol}:{_peer_of(net_stream)}", logging.INFO, "stream %s from %s failed, reset: %s",
                     protocol, _peer_of(net_stream), _describe(exc))
            try:
                await net_stream.reset()
            except Exception:
                pass

    BasicHost._swarm_stream_handler = _swarm_stream_handler
    originals.update(swarm_stream_handler=original)
