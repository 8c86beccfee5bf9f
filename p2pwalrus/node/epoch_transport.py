"""The wire of the epoch agreement (node/epoch_agreement.py's EpochService): batches in, one
outbox and one sender task per peer out (trio).

- Protocol ``/p2pwalrus/epoch/1.0.0``: a stream carries batches, each a
  2-byte count (1..:data:`MAX_BATCH`), then that many frames (varint length,
  at most :data:`MAX_MESSAGE_SIZE` each); no reply.  A sender keeps its
  stream open for :data:`STREAM_LIFETIME` (the receiver's handler deadline
  bounds it anyway).  Every frame is
  parsed and its signature checked (:func:`parse_message`) before the machine
  sees it; the sender's signature, not the transport peer, is what counts, so
  messages are relayed as they are.
- Each peer gets an outbox (ordered, without duplicates, bounded) and one
  sender task that sends everything queued in one stream: a slow or dead
  peer costs its own queue, never the others'.  A full outbox drops its
  oldest message: :meth:`Tendermint.gossip`, re-sent every
  ``gossip_every`` seconds, makes up for any loss, as the paper's gossip
  assumption asks.
"""

from __future__ import annotations

import logging

import trio
from libp2p.peer.id import ID

from ..core import protocols
from ..core.wal.agreement import MAX_MESSAGE_SIZE
from ..errors import ProtocolError
from ..p2p import rpc
from ..p2p.framing import encode_frames, read_exactly, read_frame

logger = logging.getLogger("p2pwalrus.epochs")

SEND_TIMEOUT = 5.0  # one message to one peer: dial (if needed), stream, frame
HANDLER_TIMEOUT = 30.0  # one inbound frame, up to MAX_MESSAGE_SIZE
OUTBOX_DEPTH = 64  # messages queued per peer before new ones are dropped (gossip re-sends)
MAX_BATCH = 64  # messages per batch
STREAM_LIFETIME = HANDLER_TIMEOUT / 2  # an outbound stream is replaced before the receiver's deadline ends it



class _Outbox:
    """Messages waiting for one peer: in order, without duplicates (gossip re-queues the same
    bytes), at most OUTBOX_DEPTH (the oldest go first: newer gossip supersedes them)."""

    def __init__(self) -> None:
        self.pending: dict[bytes, None] = {}
        self._ready = trio.Event()

    def put(self, data: bytes) -> bool:
        dropped = False
        if data in self.pending:
            return True
        if len(self.pending) >= OUTBOX_DEPTH:
            del self.pending[next(iter(self.pending))]
            dropped = True
        self.pending[data] = None
        self._ready.set()
        return not dropped

    async def wait(self) -> None:
        await self._ready.wait()

    def take(self, limit: int) -> list[bytes]:
        out = []
        while self.pending and len(out) < limit:
            data = next(iter(self.pending))
            del self.pending[data]
            out.append(data)
        if not self.pending:
            self._ready = trio.Event()
        return out



class _EpochTransport:
    """EpochService's streams: serving the protocols, reading batches, sending through the
    per-peer outboxes. Uses the service's ``node``, ``limits``, ``peer_id``, ``counters``,
    ``_outboxes``, ``_nursery``, ``_take`` and ``_handle_chain``."""

    # -- wiring

    def register(self) -> None:
        """Serve the epoch protocol on the node's host."""
        self.node.host.set_stream_handler(
            protocols.EPOCH, rpc.serve(self._handle, HANDLER_TIMEOUT, "epoch", self._gate, self.limits))
        self.node.host.set_stream_handler(
            protocols.EPOCH_CHAIN, rpc.serve(self._handle_chain, HANDLER_TIMEOUT, "epoch-chain", self._gate, self.limits))

    def _gate(self, peer: str):
        return None if peer in self.node.deny else 0

    # -- inbound

    async def _handle(self, stream, peer: str) -> None:
        """Batches until the sender closes the stream (it keeps one open per peer for a while)."""
        while True:
            try:
                head = await stream.read(2)
            except Exception:  # a reset between batches: the sender opens another stream
                return
            if not head:
                return
            if len(head) == 1:
                head += await read_exactly(stream, 1)
            count = int.from_bytes(head, "big")
            if not 0 < count <= MAX_BATCH:
                raise ProtocolError(f"a batch holds 1..{MAX_BATCH} messages")
            for _ in range(count):
                data = await read_frame(stream, MAX_MESSAGE_SIZE)
                if peer not in self.node.deny:  # a partition cuts streams that were open too
                    self._take(data, peer)

    # -- outbound

    def _send(self, peer: str, data: bytes) -> None:
        box = self._outboxes.get(peer)
        if box is None:
            if self._nursery is None:
                return
            box = self._outboxes[peer] = _Outbox()
            self._nursery.start_soon(self._sender, peer, box)
        if not box.put(bytes(data)):
            self.counters["dropped"] += 1

    def _broadcast(self, members, data: bytes) -> None:
        for peer in members:
            if peer != self.peer_id:
                self._send(peer, data)

    async def _sender(self, peer: str, box: _Outbox) -> None:
        """Everything queued for ``peer`` goes out together as one batch, on a stream kept open
        for up to STREAM_LIFETIME (opening a stream costs more than the messages it carries)."""
        pid = ID.from_base58(peer)
        stream, opened = None, 0.0
        try:
            while True:
                await box.wait()
                batch = box.take(MAX_BATCH)
                if peer in self.node.deny:
                    if stream is not None:
                        await rpc.close_quietly(stream, reset=True)
                        stream = None
                    continue
                try:
                    with trio.fail_after(SEND_TIMEOUT):
                        if stream is not None and trio.current_time() - opened > STREAM_LIFETIME:
                            await rpc.close_quietly(stream)
                            stream = None
                        if stream is None:
                            stream = await self.node.open_stream(pid, [protocols.EPOCH])
                            opened = trio.current_time()
                        await stream.write(len(batch).to_bytes(2, "big") + encode_frames(batch))
                    self.counters["sent"] += len(batch)
                except Exception as exc:  # a dial or stream failure: gossip will try again
                    self.counters["send_failed"] += len(batch)
                    logger.debug("epoch messages to %s failed: %r", peer, exc)
                    if stream is not None:
                        await rpc.close_quietly(stream, reset=True)
                        stream = None
        finally:
            if stream is not None:
                await rpc.close_quietly(stream)
