"""Sender records (fast path patch 8), for py-libp2p 0.8.1's ``libp2p.pubsub`` (Pubsub and GossipSub).

``patch_records()``: ``maybe_consume_signed_record`` (pubsub.py:565 and gossipsub.py:932),
the check of the signed peer record carried by every RPC, is skipped for a record
byte-identical to the last one accepted from that peer. It cost an Ed25519 verification and
a peerstore update, twice per RPC, and a peer sends the same record until its addresses
change.

Pinned to libp2p 0.8.1: applied only by ``fastpath.enable()``, which checks the version.
"""

from __future__ import annotations

from typing import Any

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

