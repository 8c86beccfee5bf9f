"""Keys, a genesis and orders for the WAL ledger tests (deterministic keys: seeded Ed25519)."""

from __future__ import annotations

from libp2p.crypto.ed25519 import create_new_key_pair

from p2pwalrus.core.keys import peer_id_from_public_key
from p2pwalrus.core.wal.committee import committee_from_genesis
from p2pwalrus.core.wal.genesis import make_genesis
from p2pwalrus.core.wal.messages import Refused
from p2pwalrus.core.wal.orders import Order, OrderKind, sign_order, sign_vote


def key(seed: int):
    return create_new_key_pair(seed.to_bytes(32, "big"))


def address(keypair) -> str:
    return peer_id_from_public_key(keypair.public_key.to_bytes())


def genesis_for(nodes, users, *, balance=1000, stake=500, n_shards=10, name="waltest"):
    return make_genesis(network=name, n_shards=n_shards, genesis_time=1767225600.0, epoch_length=3600.0,
                        committee=[(address(k), stake) for k in nodes],
                        accounts=[(address(k), balance) for k in users])


def order(genesis, sender_key, sequence, recipient, amount, kind=OrderKind.TRANSFER, epoch=0, payload=b""):
    o = Order(genesis.hash(), epoch, address(sender_key), sequence, recipient, amount, kind, payload)
    return sign_order(sender_key, o)


def votes(signed, node_keys):
    return [sign_vote(k, address(k), signed.order) for k in node_keys]


def assert_refused(reply: dict, *words: str, code: str | None = None) -> Refused:
    """``reply`` is a refusal (``{"ok": false, ...}``, well formed) whose reason holds every one
    of ``words`` and whose code is ``code`` (when given)."""
    assert isinstance(reply, dict) and reply.get("ok") is False, reply
    refused = Refused.from_json(reply)
    missing = [w for w in words if w not in refused.error]
    assert not missing, (missing, reply)
    assert code is None or refused.code == code, (code, reply)
    return refused


async def expect_refusal(client, peer: str, protocol, request, *words: str, code: str | None = None) -> Refused:
    """Send ``request`` (a message of core/wal/messages.py, or raw JSON: a malformed one) to
    ``peer`` over ``protocol`` and check that it is refused (:func:`assert_refused`)."""
    header = request.to_json() if hasattr(request, "to_json") else request
    return assert_refused(await client.call(peer, protocol, header), *words, code=code)


__all__ = ["key", "address", "genesis_for", "order", "votes", "committee_from_genesis", "assert_refused",
           "expect_refusal"]
