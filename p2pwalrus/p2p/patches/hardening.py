"""Keep a bad message from a peer, or many short-lived clients, from stopping the node (py-libp2p 0.8.1).

``apply()`` (idempotent: once per process) puts these boundaries in place, in this order,
each in the module of the py-libp2p subsystem it patches:

1. A failure cannot travel up from a peer's input to the host:

   - host.py: every stream handler's failure ends only its own stream: logged, the stream
     reset (a malformed GossipSub frame stopped the whole node process);
   - pubsub.py: every topic validator registered with ``Pubsub.set_topic_validator`` (ours
     and any library one) returns False instead of raising: the message is dropped, one log
     line; and ``Pubsub.push_msg`` as a whole contains failures (signature checks, routers).

   Failures are logged once each, and a flood of them is summarised rather than logged line
   by line (``LogOnce``); ``stats`` counts them (containment.py).

2. swarm.py: an inbound connection's handler returns once its connection has closed, so
   the swarm's inbound cap (250 here) bounds open inbound connections instead of every
   inbound connection in the node's life.

Pinned to libp2p 0.8.1 (the patched methods are 0.8.1's).
"""

from __future__ import annotations

from . import host, pubsub, swarm
from .containment import log_once, originals, stats, stats_changed
from .pubsub import contain_validator

__all__ = ["apply", "contain_validator", "log_once", "originals", "stats", "stats_changed"]

_applied = False


def apply() -> None:
    """Idempotent: patch py-libp2p's boundaries once per process."""
    global _applied
    if _applied:
        return
    host.contain_stream_handlers()
    pubsub.contain_validators()
    pubsub.contain_push()
    swarm.release_inbound_slots_on_close()
    _applied = True
