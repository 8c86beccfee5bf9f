"""The value each epoch change agrees on (see :mod:`.epoch_state`): ``EpochState`` with its
committee members and prices, checked when built, and its one canonical encoding and
digest. Importable from ``epoch_state`` as before."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property

from p2pwalrus.core.wal.agreement import (
    MAX_VALUE_SIZE, is_quorum, value_id
)
from p2pwalrus.core.wal.placement_stake import (
    default_cap
)
from p2pwalrus.core.wal import fields
from ...errors import InvalidEpochStateError

EPOCH_STATE_VERSION = 1
ZERO_DIGEST = bytes(32)
MAX_STATE_BYTES = MAX_VALUE_SIZE
MAX_COMMITTEE = 4096
MAX_SHARDS = fields.MAX_SHARDS
MAX_PARAMETERS = fields.MAX_PARAMETERS
MAX_CREDITS = 1 << 16
MAX_CERT_BYTES = 1 << 20
_SEED_PERSON = b"p2pw-place-seed"
_GENESIS_SEED_PERSON = b"p2pw-genesis-sd"
_STATE_FIELDS = ("committee", "epoch", "n_shards", "network", "parameters", "prev_digest", "prices",
                 "reward_credits", "version")

#: The parameter that carries the per-node shard cap (see placement_stake).
SHARD_CAP = "shard_cap"


def _u64(name: str, value: object) -> int:
    return fields.u64(value, name, InvalidEpochStateError)


def _peer(name: str, value: object) -> str:
    return fields.peer_id(value, name, InvalidEpochStateError)


@dataclass(frozen=True)
class CommitteeMember:
    peer_id: str
    stake: int  # FROST staked to this node
    shards: tuple[int, ...]  # ascending

    def __post_init__(self) -> None:
        _peer("committee peer_id", self.peer_id)
        _u64("stake", self.stake)
        if not isinstance(self.shards, tuple) or list(self.shards) != sorted(set(self.shards)):
            raise InvalidEpochStateError("a member's shards must be an ascending tuple without repeats")
        for s in self.shards:
            if type(s) is not int or not 0 <= s < MAX_SHARDS:
                raise InvalidEpochStateError("shard indices must be integers below 2^16")
        if self.stake == 0 and self.shards:
            raise InvalidEpochStateError("a member without stake cannot hold shards")


@dataclass(frozen=True)
class Prices:
    """FROST per 1 MiB unit of encoded size: per epoch stored, and once per write."""

    storage_price_per_unit: int = 0
    write_price_per_unit: int = 0

    def __post_init__(self) -> None:
        _u64("storage_price_per_unit", self.storage_price_per_unit)
        _u64("write_price_per_unit", self.write_price_per_unit)


@dataclass(frozen=True)
class EpochState:
    """What every node of epoch ``epoch`` must see alike.  Validated at construction."""

    network: str
    epoch: int
    n_shards: int
    committee: tuple[CommitteeMember, ...]  # sorted by peer ID
    prices: Prices
    parameters: tuple[tuple[str, int], ...] = ()  # sorted by name
    reward_credits: tuple[tuple[str, int], ...] = ()  # placeholder: peer ID -> FROST credited
    prev_digest: bytes = ZERO_DIGEST
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # network, n_shards, parameters: checked as a genesis checks them (one rule each)
        fields.network_values(network=self.network, n_shards=self.n_shards, params=self.parameters,
                              error=InvalidEpochStateError)
        _u64("epoch", self.epoch)
        if not isinstance(self.committee, tuple) or not 1 <= len(self.committee) <= MAX_COMMITTEE:
            raise InvalidEpochStateError(f"the committee must have 1..{MAX_COMMITTEE} members")
        if not all(isinstance(m, CommitteeMember) for m in self.committee):
            raise InvalidEpochStateError("committee entries must be CommitteeMember")
        ids = [m.peer_id for m in self.committee]
        if ids != sorted(set(ids)):
            raise InvalidEpochStateError("the committee must be sorted by peer ID, without repeats")
        held = sorted(s for m in self.committee for s in m.shards)
        if held != list(range(self.n_shards)):
            raise InvalidEpochStateError("every shard must be held by exactly one member")
        if not isinstance(self.prices, Prices):
            raise InvalidEpochStateError("prices must be Prices")
        fields.pairs(self.reward_credits, "reward_credits", MAX_CREDITS, lambda p: _peer("credited peer", p),
                     InvalidEpochStateError)
        if not isinstance(self.prev_digest, bytes) or len(self.prev_digest) != 32:
            raise InvalidEpochStateError("prev_digest must be 32 bytes")
        if (self.epoch == 0) != (self.prev_digest == ZERO_DIGEST):
            raise InvalidEpochStateError("only epoch 0 (genesis) has no previous state")

    # -- encoding

    def to_json_obj(self) -> dict:
        return {
            "committee": [{"peer_id": m.peer_id, "shards": list(m.shards), "stake": m.stake}
                          for m in self.committee],
            "epoch": self.epoch,
            "n_shards": self.n_shards,
            "network": self.network,
            "parameters": dict(self.parameters),
            "prev_digest": self.prev_digest.hex(),
            "prices": {"storage_price_per_unit": self.prices.storage_price_per_unit,
                       "write_price_per_unit": self.prices.write_price_per_unit},
            "reward_credits": dict(self.reward_credits),
            "version": EPOCH_STATE_VERSION,
        }

    def to_bytes(self) -> bytes:
        data = self._cache.get("bytes")
        if data is None:
            data = json.dumps(self.to_json_obj(), sort_keys=True, separators=(",", ":"),
                              ensure_ascii=True, allow_nan=False).encode()
            self._cache["bytes"] = data
        return data

    @classmethod
    def from_bytes(cls, data: bytes) -> EpochState:
        """Parse canonical bytes (bounded), or InvalidEpochStateError."""
        if not isinstance(data, (bytes, bytearray)) or len(data) > MAX_STATE_BYTES:
            raise InvalidEpochStateError(f"an epoch state is at most {MAX_STATE_BYTES} bytes")
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise InvalidEpochStateError("not JSON") from None
        try:
            if not isinstance(obj, dict) or tuple(sorted(obj)) != _STATE_FIELDS:
                raise InvalidEpochStateError(f"fields must be exactly {', '.join(_STATE_FIELDS)}")
            if obj["version"] != EPOCH_STATE_VERSION:
                raise InvalidEpochStateError(f"unknown version {obj['version']!r}")
            members = []
            for m in obj["committee"]:
                if not isinstance(m, dict) or sorted(m) != ["peer_id", "shards", "stake"]:
                    raise InvalidEpochStateError("a member has exactly peer_id, shards, stake")
                if not isinstance(m["shards"], list):
                    raise InvalidEpochStateError("shards must be a list")
                members.append(CommitteeMember(m["peer_id"], m["stake"], tuple(m["shards"])))
            prices = obj["prices"]
            if not isinstance(prices, dict) or sorted(prices) != ["storage_price_per_unit",
                                                                 "write_price_per_unit"]:
                raise InvalidEpochStateError("prices has exactly storage_price_per_unit, write_price_per_unit")
            if not isinstance(obj["parameters"], dict) or not isinstance(obj["reward_credits"], dict):
                raise InvalidEpochStateError("parameters and reward_credits must be objects")
            if not isinstance(obj["prev_digest"], str) or len(obj["prev_digest"]) != 64:
                raise InvalidEpochStateError("prev_digest must be 64 hex digits")
            state = cls(
                network=obj["network"],
                epoch=obj["epoch"],
                n_shards=obj["n_shards"],
                committee=tuple(members),
                prices=Prices(prices["storage_price_per_unit"], prices["write_price_per_unit"]),
                parameters=tuple(sorted(obj["parameters"].items())),
                reward_credits=tuple(sorted(obj["reward_credits"].items())),
                prev_digest=bytes.fromhex(obj["prev_digest"]),
            )
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            if isinstance(exc, InvalidEpochStateError):
                raise
            raise InvalidEpochStateError(f"malformed ({type(exc).__name__})") from None
        if state.to_bytes() != bytes(data):
            raise InvalidEpochStateError("not in canonical form")
        return state

    # -- derived

    @property
    def digest(self) -> bytes:
        """``id(v)`` of the agreement: Blake2b-256 of the canonical bytes."""
        d = self._cache.get("digest")
        if d is None:
            d = self._cache["digest"] = value_id(self.to_bytes())
        return d

    @property
    def placement_seed(self) -> bytes:
        """The seed that places the shards of the *next* epoch (unknown until this state is decided)."""
        return hashlib.blake2b(self.digest, digest_size=32, person=_SEED_PERSON).digest()

    @cached_property
    def weights(self) -> dict[str, int]:
        """Voting weight of each member in this epoch: its shard count."""
        return {m.peer_id: len(m.shards) for m in self.committee}

    @cached_property
    def stakes(self) -> dict[str, int]:
        return {m.peer_id: m.stake for m in self.committee}

    @cached_property
    def shards_by_node(self) -> dict[str, tuple[int, ...]]:
        return {m.peer_id: m.shards for m in self.committee}

    @cached_property
    def owners(self) -> tuple[str, ...]:
        """``owners[s]``: the member holding shard ``s``."""
        out = [""] * self.n_shards
        for m in self.committee:
            for s in m.shards:
                out[s] = m.peer_id
        return tuple(out)

    def parameter(self, name: str, default: int | None = None) -> int | None:
        return dict(self.parameters).get(name, default)

    @property
    def shard_cap(self) -> int:
        """The cap placement applies to the next epoch: the ``shard_cap`` parameter, or Walrus's rule."""
        cap = self.parameter(SHARD_CAP)
        if cap is None:
            cap = default_cap(sum(1 for m in self.committee if m.stake), self.n_shards)
        return cap

    def is_quorum(self, weight: int) -> bool:
        return is_quorum(weight, self.n_shards)
