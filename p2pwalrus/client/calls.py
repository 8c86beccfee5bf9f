"""Calls to nodes: one stream per request, a JSON header, a JSON reply (and maybe a frame).

``call`` and ``call_with_blob`` carry plain dicts (the WAL exchanges use them so); ``request``
and ``request_with_blob`` carry the typed messages of core/messages.py and check the reply.
"""

from __future__ import annotations

import trio

from .. import p2p as _p2p  # noqa: F401  (first: loads libp2p lean, see p2p/patches/lean_import.py)
from libp2p.peer.id import ID  # noqa: E402

from ..core import messages as wire
from ..p2p import rpc
from ..p2p.host import open_stream

DIAL_TIMEOUT = 5.0
CALL_TIMEOUT = 10.0


class Calls:
    """The request/response layer of `Client` (needs ``self.host`` and ``self.net``)."""

    async def new_stream(self, peer_id: str, protocol):
        """A stream to a node; if its connection went away, dial once more and retry."""
        return await open_stream(self.host, ID.from_base58(peer_id), [protocol], DIAL_TIMEOUT)

    async def call(self, peer_id: str, protocol, header: dict, *, max_reply: int = rpc.MAX_LIST_REPLY,
                   timeout: float = CALL_TIMEOUT) -> dict:
        """One JSON header, one JSON reply (the transport under `request`; the WAL exchanges use it as is)."""
        return await rpc.call_for_reply(lambda: self.new_stream(peer_id, protocol), header, timeout=timeout,
                                        max_reply=max_reply)

    async def call_with_blob(self, peer_id: str, protocol, header: dict, max_size: int,
                             timeout: float = CALL_TIMEOUT, into: memoryview | None = None
                             ) -> tuple[dict, bytes | memoryview | None]:
        return await rpc.call_for_blob(lambda: self.new_stream(peer_id, protocol), header, max_size, timeout=timeout,
                                       into=into)

    async def request(self, peer_id: str, request: wire.Request, **kw):
        """A typed exchange (core/messages.py): the request's reply message, parsed and checked
        (ProtocolError naming the field if the node sent a malformed one)."""
        reply = await self.call(peer_id, request.protocol, request.to_json(), **kw)
        return request.reply.from_json(reply, n_shards=self.net.n_shards)

    async def request_with_blob(self, peer_id: str, request: wire.Request, max_size: int,
                                timeout: float = CALL_TIMEOUT, into: memoryview | None = None):
        """(reply message, the frame that follows an ok reply or None): metadata, slivers, certificates, proofs.
        ``into``: the frame is read into this buffer, and must fill it exactly."""
        reply, raw = await self.call_with_blob(peer_id, request.protocol, request.to_json(), max_size, timeout, into)
        return request.reply.from_json(reply, n_shards=self.net.n_shards), raw

    async def gather(self, peers, fn, *, limit: int = 16) -> dict[str, object]:
        """Run fn(peer) for each peer in parallel; map peer -> result or exception."""
        results: dict[str, object] = {}
        limiter = trio.CapacityLimiter(limit)

        async def one(peer):
            async with limiter:
                try:
                    results[peer] = await fn(peer)
                except Exception as exc:
                    results[peer] = exc

        async with trio.open_nursery() as nursery:
            for p in peers:
                nursery.start_soon(one, p)
        return results
