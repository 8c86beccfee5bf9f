"""Keep a bad stream, or many short-lived clients, from stopping the node (py-libp2p 0.8.1).

1. An exception in a stream handler of py-libp2p's own protocols (GossipSub, Kademlia,
   identify) is not caught there: it ends the connection's task group and, through it, the
   host. A peer that sends one malformed GossipSub frame (``DecodeError`` in
   ``Pubsub.continuously_read_stream``) stopped the whole node process. ``apply()`` makes
   every handler's failure end only its own stream: logged, the stream reset.

2. Every inbound TCP connection takes a slot of the swarm's inbound cap
   (``Swarm._inbound_limiter``: max_connections - min_connections = 250 here), released when
   its handler returns; and the handler, once the connection is upgraded, waits for the
   *swarm* to finish (``await self.manager.wait_finished()``, swarm.py:2060), not for the
   connection to close. So a slot was never given back: after 250 inbound connections in a
   node's life, counting every CLI command that ever dialled it, the node refused every new
   one ("no bootstrap peer answered", "recently failed all addresses"). On a 10-node
   netlab that was round 82 of the read-after-write loop, every time. ``apply()`` makes
   the handler return once its connection has closed (Yamux ``event_closed``), so the cap
   bounds open inbound connections, as it was meant to.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

import trio

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
    _release_inbound_slots_on_close()
    _applied = True


class _Upgraded:
    """The muxed connection an inbound handler produced, handed from the upgrade back to it."""

    def __init__(self) -> None:
        self.muxed: Any = None
        self.ready = trio.Event()


_upgraded: contextvars.ContextVar[_Upgraded | None] = contextvars.ContextVar("p2pwalrus_inbound", default=None)


def _release_inbound_slots_on_close() -> None:
    """(2) An inbound connection's handler returns when that connection has closed."""
    from libp2p.network.swarm import Swarm

    orig_upgrade = Swarm.upgrade_inbound_raw_conn
    orig_handle = Swarm._do_handle_inbound_connection

    async def upgrade_inbound_raw_conn(self: Any, raw_conn: Any, maddr: Any) -> Any:
        muxed = await orig_upgrade(self, raw_conn, maddr)
        box = _upgraded.get()
        if box is not None:
            box.muxed = muxed
            box.ready.set()
        return muxed

    async def _do_handle_inbound_connection(self: Any, read_write_closer: Any, maddr: Any,
                                            failure_event: Any) -> None:
        box = _Upgraded()
        token = _upgraded.set(box)  # read by upgrade_inbound_raw_conn, run in this very task
        try:
            async with trio.open_nursery() as nursery:
                async def until_closed() -> None:
                    await box.ready.wait()
                    closed = getattr(box.muxed, "event_closed", None)
                    if closed is None:  # a muxer without the event: the library's own wait
                        return
                    await closed.wait()
                    nursery.cancel_scope.cancel()  # ends the library's wait for the whole swarm

                nursery.start_soon(until_closed)
                await orig_handle(self, read_write_closer, maddr, failure_event)
                nursery.cancel_scope.cancel()  # refused or failed before the upgrade finished
        finally:
            _upgraded.reset(token)

    Swarm.upgrade_inbound_raw_conn = upgrade_inbound_raw_conn
    Swarm._do_handle_inbound_connection = _do_handle_inbound_connection
