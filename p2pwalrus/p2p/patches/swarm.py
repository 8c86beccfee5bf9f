"""Inbound connection slots given back on close (hardening 2), for py-libp2p 0.8.1's Swarm.

What: ``Swarm._do_handle_inbound_connection`` returns once its connection has closed (Yamux
``event_closed``); ``Swarm.upgrade_inbound_raw_conn`` hands the upgraded connection back to
it (through a context variable, in the same task).

Why: every inbound TCP connection takes a slot of the swarm's inbound cap
(``Swarm._inbound_limiter``: max_connections - min_connections = 250 here), released when
its handler returns; and the handler, once the connection is upgraded, waits for the
*swarm* to finish (``await self.manager.wait_finished()``, swarm.py:2060), not for the
connection to close. So a slot was never given back: after 250 inbound connections in a
node's life, counting every CLI command that ever dialled it, the node refused every new
one ("no bootstrap peer answered", "recently failed all addresses"). On a 10-node netlab
that was round 82 of the read-after-write loop, every time. Now the cap bounds open inbound
connections, as it was meant to.

Pinned to libp2p 0.8.1: applied only by ``hardening.apply()``, once per process.
"""

from __future__ import annotations

import contextvars
from typing import Any

import trio


class _Upgraded:
    """The muxed connection an inbound handler produced, handed from the upgrade back to it."""

    def __init__(self) -> None:
        self.muxed: Any = None
        self.ready = trio.Event()


_upgraded: contextvars.ContextVar[_Upgraded | None] = contextvars.ContextVar("p2pwalrus_inbound", default=None)


def release_inbound_slots_on_close() -> None:
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
