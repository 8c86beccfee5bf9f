"""Keys, a genesis and orders for the WAL ledger tests (deterministic keys: seeded Ed25519)."""

from __future__ import annotations

from libp2p.crypto.ed25519 import create_new_key_pair

from p2pwalrus.core.keys import peer_id_from_public_key
from p2pwalrus.core.wal.committee import committee_from_genesis
from p2pwalrus.core.wal.genesis import make_genesis
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


__all__ = ["key", "address", "genesis_for", "order", "votes", "committee_from_genesis"]
