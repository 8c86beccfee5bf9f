"""PubSub patches, for py-libp2p 0.8.1's ``libp2p.pubsub`` (Pubsub and GossipSub).

Fast path (8), ``patch_records()``: ``maybe_consume_signed_record`` (pubsub.py:565 and
gossipsub.py:932), the check of the signed peer record carried by every RPC, is skipped for
a record byte-identical to the last one accepted from that peer. It cost an Ed25519
verification and a peerstore update, twice per RPC, and a peer sends the same record until
its addresses change. Fast path (13), ``patch_batching()``: the RPCs queued for one peer
when its sending loop wakes go out merged into one RPC.

Hardening (1), ``contain_validators()`` and ``contain_push()``: ``Pubsub.validate_msg``
catches only ``ValidationError``, so a topic validator that raised anything else
(``OverflowError`` on ``1e400``, ``RecursionError`` on deeply nested JSON, ``ValueError`` on
an empty member ID) ended ``push_msg``'s task, the pubsub service and the host with it.
Every validator registered with ``Pubsub.set_topic_validator`` (ours and any library one)
now returns False instead of raising: the message is dropped, one log line; and
``Pubsub.push_msg`` as a whole contains failures (signature checks, routers). Both count
into ``containment.stats``.

Pinned to libp2p 0.8.1: ``patch_records()`` and ``patch_batching()`` are applied only by
``fastpath.enable()``, which checks the version; the containment only by
``hardening.apply()``, once per process.
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any

from ..log_once import describe as _describe
from .containment import count, log_once, originals

logger = logging.getLogger(__name__)

_originals: dict[str, Any] = {}  # what patch_records() replaced


# --- sender records (fast path) -----------------------------------------------------


def patch_records() -> None:
    """(8) Every GossipSub RPC carries its sender's signed peer record, and 0.8.1 checks it
    twice per RPC (pubsub.py:565, gossipsub.py:932): an Ed25519 verification and a
    peerstore update each time. A peer sends the same record until its addresses
    change, so a record byte-identical to the last one accepted from that peer is
    taken as accepted again without the work. Anything else goes to the library.
    """
    from libp2p.pubsub import gossipsub, pubsub

    orig = pubsub.maybe_consume_signed_record
    _originals["consume_record"] = orig

    def maybe_consume_signed_record(msg: Any, host: Any, peer_id: Any) -> bool:
        if not msg.HasField("senderRecord"):
            return True
        seen = host.__dict__.setdefault("_fastpath_sender_records", {})
        record = msg.senderRecord
        if seen.get(peer_id) == record:
            return True
        ok = orig(msg, host, peer_id)
        if ok:
            if len(seen) >= 4096:  # bounded: forget everyone rather than grow without limit
                seen.clear()
            seen[peer_id] = record
        return ok

    pubsub.maybe_consume_signed_record = maybe_consume_signed_record
    gossipsub.maybe_consume_signed_record = maybe_consume_signed_record


def unpatch_records() -> None:
    from libp2p.pubsub import gossipsub, pubsub

    pubsub.maybe_consume_signed_record = gossipsub.maybe_consume_signed_record = _originals["consume_record"]


# --- queued RPCs sent together (fast path) ---------------------------------------------

MERGED_RPC_BYTES = 64 * 1024  # RPCs waiting for one peer are sent as one, up to about this size


def patch_batching() -> None:
    """(13) 0.8.1's per-peer sending loop (``Pubsub.handle_sending_messages``) writes each
    queued RPC on its own: a Yamux frame, a Noise message, a socket write and a wake-up of
    the reader's task, each for one forwarded message or one IHAVE. The RPCs already waiting
    when the loop wakes are merged into one (``RPC.MergeFrom``: their publish, subscription
    and control lists concatenated, as go-libp2p piggybacks control on messages), up to
    ``MERGED_RPC_BYTES``. The wire carries ordinary RPCs, just fewer of them."""
    from libp2p.pubsub.pubsub import Pubsub

    original = Pubsub.handle_sending_messages
    _originals["handle_sending_messages"] = original

    async def handle_sending_messages(self: Any, peer_id: Any, stream: Any, queue: Any) -> None:
        try:
            while True:
                rpc = await queue.pop()
                if rpc is None:
                    return
                if len(queue):
                    size = rpc.ByteSize()
                    while len(queue) and size < MERGED_RPC_BYTES:
                        more = queue._queue.pop()
                        if more is None:
                            break
                        size += more.ByteSize()
                        rpc.MergeFrom(more)
                if not await self.write_msg(stream, rpc):
                    return
        except Exception:
            logger.debug("sending loop for %s terminated with error", peer_id)
            self._handle_dead_peer(peer_id)

    Pubsub.handle_sending_messages = handle_sending_messages


def unpatch_batching() -> None:
    from libp2p.pubsub.pubsub import Pubsub

    Pubsub.handle_sending_messages = _originals["handle_sending_messages"]


# --- validator and push_msg containment (hardening) ---------------------------------


def contain_validator(topic: str, validator: Any, is_async: bool) -> Any:
    """A validator that never raises: any exception drops the message (returns False)."""

    def refuse(forwarder: Any, exc: BaseException) -> bool:
        count(("validator_failed", topic))
        log_once(f"validator:{topic}:{forwarder}", logging.WARNING, "gossip on %s from %s refused: validator failed with %s",
                 topic, forwarder, _describe(exc))
        return False

    if is_async:
        @functools.wraps(validator)
        async def contained_async(forwarder: Any, msg: Any) -> bool:
            count(("validated", topic))
            try:
                return bool(await validator(forwarder, msg))
            except Exception as exc:  # Cancelled is a BaseException: it goes on
                return refuse(forwarder, exc)

        contained_async.__p2pwalrus_contained__ = True  # type: ignore[attr-defined]
        return contained_async

    @functools.wraps(validator)
    def contained(forwarder: Any, msg: Any) -> bool:
        count(("validated", topic))
        try:
            return bool(validator(forwarder, msg))
        except Exception as exc:
            return refuse(forwarder, exc)

    contained.__p2pwalrus_contained__ = True  # type: ignore[attr-defined]
    return contained


def contain_validators() -> None:
    """Every topic validator registered from now on is wrapped by ``contain_validator``."""
    from libp2p.pubsub.pubsub import Pubsub

    original_set_validator = Pubsub.set_topic_validator

    def set_topic_validator(self: Any, topic: str, validator: Any, is_async_validator: bool) -> None:
        if not getattr(validator, "__p2pwalrus_contained__", False):
            is_async = is_async_validator or inspect.iscoroutinefunction(validator)
            validator = contain_validator(topic, validator, is_async)
        original_set_validator(self, topic, validator, is_async_validator)

    Pubsub.set_topic_validator = set_topic_validator
    originals.update(set_topic_validator=original_set_validator)


def contain_push() -> None:
    """A failure anywhere in ``Pubsub.push_msg`` drops that message, not the pubsub service."""
    from libp2p.pubsub.pubsub import Pubsub

    original_push = Pubsub.push_msg

    async def push_msg(self: Any, msg_forwarder: Any, msg: Any) -> None:
        try:
            await original_push(self, msg_forwarder, msg)
        except Exception as exc:
            count("push_failed")
            log_once("push_msg", logging.WARNING, "gossip message from %s dropped: %s", msg_forwarder, _describe(exc))

    Pubsub.push_msg = push_msg
    originals.update(push_msg=original_push)
