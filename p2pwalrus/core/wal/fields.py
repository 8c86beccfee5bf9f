"""Field checks shared by the WAL's values (pure): integers in range (never a bool), peer IDs,
fixed-length hex, and the (name, integer) parameter pairs that a genesis and every epoch
state carry. Each takes the error class of the value it checks, so a genesis still says
GenesisError and an epoch state InvalidEpochStateError, from one rule."""

from __future__ import annotations

import re

from ...errors import ProtocolError
from ..keys import public_key_from_peer_id

U64_MAX = (1 << 64) - 1
MAX_PARAMETERS = 64
PARAMETER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


def integer(value, name: str, lo: int, hi: int, error=ProtocolError) -> int:
    """``value`` if it is an int (not a bool) in ``lo..hi``; else ``error`` naming ``name``."""
    if type(value) is not int or not lo <= value <= hi:
        raise error(f"{name} must be an integer in {lo}..{hi}")
    return value


def u64(value, name: str, error=ProtocolError) -> int:
    if type(value) is not int or not 0 <= value <= U64_MAX:
        raise error(f"{name} must be an integer in 0..2^64-1")
    return value


def peer_id(value, name: str, error=ProtocolError) -> str:
    """The peer ID text of an Ed25519 key ("12D3KooW..."): an account's or a node's address."""
    if not isinstance(value, str):
        raise error(f"{name} must be a peer ID string")
    try:
        public_key_from_peer_id(value)
    except ValueError:
        raise error(f"{name} {value[:60]!r} is not an Ed25519 peer ID") from None
    return value


def hex_bytes(value, name: str, size: int, error=ProtocolError) -> bytes:
    """Exactly ``size`` bytes written as ``2 * size`` hex digits."""
    if not isinstance(value, str) or len(value) != 2 * size:
        raise error(f"{name} must be {2 * size} hex digits")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise error(f"{name} must be {2 * size} hex digits") from None


def parameter_name(name, error=ProtocolError) -> str:
    if not isinstance(name, str) or not PARAMETER_NAME.match(name):
        raise error("parameter names must match [a-z][a-z0-9_]{0,47}")
    return name


def pairs(items, name: str, limit: int, key_check, error=ProtocolError) -> tuple[tuple[str, int], ...]:
    """A tuple of at most ``limit`` (key, u64) pairs with keys sorted and distinct."""
    if not isinstance(items, tuple) or len(items) > limit:
        raise error(f"{name} must be a tuple of at most {limit} (key, integer) pairs")
    keys = []
    for pair in items:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise error(f"{name} must hold (key, integer) pairs")
        keys.append(key_check(pair[0]))
        u64(pair[1], f"{name} value", error)
    if keys != sorted(set(keys)):
        raise error(f"{name} keys must be sorted and distinct")
    return items


def parameters(items, error=ProtocolError) -> tuple[tuple[str, int], ...]:
    """A network's parameters (genesis and every epoch state): sorted distinct names, u64 values."""
    return pairs(items, "parameters", MAX_PARAMETERS, lambda k: parameter_name(k, error), error)


MAX_SHARDS = 1 << 16
NETWORK_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")


def network_name(value, error=ProtocolError) -> str:
    if not isinstance(value, str) or not NETWORK_NAME.match(value):
        raise error("network name must match [a-z0-9][a-z0-9._-]{0,31}")
    return value


def shard_count(value, error=ProtocolError) -> int:
    if type(value) is not int or not 1 <= value <= MAX_SHARDS:
        raise error("n_shards must be in 1..2^16")
    return value


def network_values(*, network, n_shards, params, prices=(), stakes=(), error=ProtocolError) -> None:
    """What a genesis and every epoch state both say of a network, under one rule each: its
    name, shard count, parameters, ``prices`` ((name, FROST) pairs) and ``stakes`` ((peer ID,
    FROST) pairs of the committee)."""
    network_name(network, error)
    shard_count(n_shards, error)
    parameters(params, error)
    for name, value in prices:
        u64(value, name, error)
    for peer, stake in stakes:
        peer_id(peer, "committee member", error)
        u64(stake, f"stake of {peer}", error)
