"""A storage node's requests to its peers (node/service.py's StorageNode): one call (a
request message, its reply parsed and checked) and a call answered by one blob.
"""

from __future__ import annotations

import trio

from ..core import messages as wire
from ..errors import ProtocolError
from ..p2p import rpc

PEER_CALL_TIMEOUT = 10.0


class _PeerCalls:
    """StorageNode's calls (uses its ``node``, ``deny``, ``delay`` and ``net``)."""


    async def call(self, peer_id: str, protocol, header, *, timeout: float = PEER_CALL_TIMEOUT):
        """Send a request header, read the JSON reply: (the open stream, the reply). ``header`` is a
        request message (core/messages.py), whose reply comes back parsed and checked by its reply
        class (ProtocolError if malformed); or a plain dict, whose reply is a dict."""
        from libp2p.peer.id import ID

        if peer_id in self.deny:
            raise ProtocolError(f"{peer_id} is on this node's deny-list (partition)")
        if self.delay:
            await trio.sleep(self.delay)
        typed = isinstance(header, wire.Request)
        stream, reply = await rpc.call(lambda: self.node.open_stream(ID.from_base58(peer_id), [protocol]),
                                       header.to_json() if typed else header, timeout=timeout)
        if typed:
            try:
                reply = header.reply.from_json(reply, n_shards=self.net.n_shards)
            except BaseException:
                await rpc.close_quietly(stream, reset=True)
                raise
        return stream, reply

    async def fetch_blob(self, peer_id: str, protocol, header, max_size: int, *,
                         timeout: float = PEER_CALL_TIMEOUT) -> bytes | None:
        """A call answered by a JSON header and, when it says ok, one blob of at most
        ``max_size`` bytes; None if the peer said it has none. (The call and the blob each
        within ``timeout``.)"""
        stream, reply = await self.call(peer_id, protocol, header, timeout=timeout)
        try:
            if not (reply.ok if isinstance(reply, wire.Reply) else reply.get("ok")):
                return None
            with trio.fail_after(timeout):
                return await rpc.recv_blob(stream, max_size)
        finally:
            await rpc.close_quietly(stream)
