"""The Byzantine thresholds of an n-shard network, each computed here and nowhere else.

``f = (n - 1) // 3`` shards may be held by faulty nodes; RS2 is built so that ``n - 2f``
shards decode a blob, a certificate needs ``n - f`` shards (a quorum: any two quorums share
an honest holder), and ``f + 1`` shards include at least one honest holder. The same rules
weigh stake in the epoch agreement (weights in shards).
"""

from __future__ import annotations


def max_faulty(n_shards: int) -> int:
    """f: the most shards faulty holders may hold, ``(n - 1) // 3``."""
    return (n_shards - 1) // 3


def quorum(n_shards: int) -> int:
    """n - f: shards (or shard weight) a certificate or a decision needs."""
    return n_shards - max_faulty(n_shards)


def one_honest(n_shards: int) -> int:
    """f + 1: that many shards include at least one honest holder (faulty ones hold at most f)."""
    return max_faulty(n_shards) + 1


def decode_threshold(n_shards: int) -> int:
    """n - 2f: that many primary slivers decode a blob (RS2's source symbols per column)."""
    return n_shards - 2 * max_faulty(n_shards)
