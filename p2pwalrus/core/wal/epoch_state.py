"""The decided state of an epoch and the chain of them from genesis (pure: no I/O, no clock).

``EpochState(e + 1)`` is what the committee of epoch ``e`` decides with one
instance of Tendermint (:mod:`.agreement`): the committee (peer ID, stake,
shards), prices, parameters, reward credits (a placeholder the next issue
fills), and the digest of ``EpochState(e)``.  Its proof is a
:class:`StateCertificate`: the precommits of the deciding round, by members of
epoch ``e``'s committee whose shards weigh a quorum (``3w >= 2n + 1``).

A newcomer that knows only the genesis digest (pinned in the network file)
verifies a chain ``genesis, (state 1, cert 1), (state 2, cert 2), ...`` with
:func:`verify_chain` without trusting whoever handed it the chain: each link
is signed by the previous committee, names the previous digest, and carries
the shard assignment that :mod:`.placement_stake` derives from its stakes, the
previous assignment and the previous state's seed.

Canonical bytes: JSON with sorted keys, no spaces, ASCII (as node records);
parsing re-encodes and refuses anything that is not byte-identical, so one
state has one encoding and one digest.  The digest is ``value_id`` of those
bytes: exactly the ``id(v)`` that the precommits sign.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from p2pwalrus.core.keys import verify_signature
from p2pwalrus.core.wal.agreement import (
    MAX_VALUE_SIZE,
    VoteKind,
    is_quorum,
    value_id,
    vote_signing_bytes,
)
from p2pwalrus.core.wal.placement_stake import (
    StakePlacementError,
    assign_shards,
    default_cap,
    effective_cap,
)
from p2pwalrus.core.wal import fields
from ...errors import InvalidEpochStateError  # noqa: F401  (defined in errors.py; importable from here)

__all__ = [
    "CommitteeMember",
    "EpochState",
    "InvalidEpochStateError",
    "Prices",
    "StateCertificate",
    "ZERO_DIGEST",
    "check_transition",
    "genesis_state",
    "genesis_state_from",
    "next_state",
    "verify_chain",
]

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


# ---------------------------------------------------------------- building states


def _members(assignment: Mapping[str, tuple[int, ...]], stakes: Mapping[str, int]) -> tuple[CommitteeMember, ...]:
    return tuple(CommitteeMember(p, stakes[p], assignment.get(p, ())) for p in sorted(stakes) if stakes[p] > 0)


def _sorted_pairs(items: Mapping[str, int] | Sequence[tuple[str, int]] | None) -> tuple[tuple[str, int], ...]:
    if items is None:
        return ()
    return tuple(sorted(dict(items).items()))


def genesis_seed(network: str) -> bytes:
    return hashlib.blake2b(network.encode(), digest_size=32, person=_GENESIS_SEED_PERSON).digest()


def genesis_state(
    network: str,
    n_shards: int,
    stakes: Mapping[str, int],
    *,
    prices: Prices = Prices(),
    parameters: Mapping[str, int] | None = None,
) -> EpochState:
    """Epoch 0: shards placed by stake with a seed from the network name (genesis is trusted)."""
    params = dict(parameters or {})
    staked = {p: s for p, s in stakes.items() if s > 0}
    try:
        if staked and SHARD_CAP not in params:
            # Pinned once here: a cap recomputed from the node count each epoch could be tightened by a Sybil.
            params[SHARD_CAP] = default_cap(len(staked), n_shards)
        cap = effective_cap(len(staked), n_shards, params.get(SHARD_CAP)) if staked else None
        assignment = assign_shards(staked, n_shards, genesis_seed(network), cap=cap)
    except StakePlacementError as exc:
        raise InvalidEpochStateError(str(exc)) from None
    return EpochState(network, 0, n_shards, _members(assignment, staked), prices, _sorted_pairs(params))


def next_state(
    prev: EpochState,
    stakes: Mapping[str, int],
    *,
    prices: Prices | None = None,
    parameters: Mapping[str, int] | None = None,
    reward_credits: Mapping[str, int] | None = None,
) -> EpochState:
    """The state of ``prev.epoch + 1`` for these stakes: what an honest proposer proposes.

    Members with zero stake leave the committee; shards follow stake
    (:func:`placement_stake.assign_shards`, keyed by ``prev.placement_seed``,
    sticking to ``prev``'s assignment as far as the counts allow).
    """
    params = dict(prev.parameters) if parameters is None else dict(parameters)
    staked = {p: s for p, s in stakes.items() if s > 0}
    try:
        cap = _cap_for(prev, params, len(staked))
        assignment = assign_shards(staked, prev.n_shards, prev.placement_seed, prev.shards_by_node, cap=cap)
    except StakePlacementError as exc:
        raise InvalidEpochStateError(str(exc)) from None
    return EpochState(
        prev.network, prev.epoch + 1, prev.n_shards, _members(assignment, staked),
        prev.prices if prices is None else prices, _sorted_pairs(params), _sorted_pairs(reward_credits),
        prev.digest,
    )


def _cap_for(prev: EpochState, params: Mapping[str, int], n_staked: int) -> int:
    cap = params.get(SHARD_CAP)
    if cap is None:
        cap = prev.shard_cap
    return effective_cap(max(1, n_staked), prev.n_shards, cap)


def check_transition(prev: EpochState, nxt: EpochState) -> None:
    """Raise InvalidEpochStateError unless ``nxt`` can follow ``prev``.

    Checks what any node can check from the two states alone: network, epoch
    number, previous digest, shard count, and that the shards are exactly the
    assignment the stakes give.  Whether the stakes themselves are right is
    the ledger's business (certificates confirmed during the epoch).
    """
    if nxt.network != prev.network:
        raise InvalidEpochStateError("the network changed")
    if nxt.epoch != prev.epoch + 1:
        raise InvalidEpochStateError(f"epoch {nxt.epoch} does not follow epoch {prev.epoch}")
    if nxt.prev_digest != prev.digest:
        raise InvalidEpochStateError(f"epoch {nxt.epoch} does not name the digest of epoch {prev.epoch}")
    if nxt.n_shards != prev.n_shards:
        raise InvalidEpochStateError("the shard count changed")
    try:
        cap = _cap_for(prev, dict(nxt.parameters), len(nxt.committee))
        expected = assign_shards(nxt.stakes, prev.n_shards, prev.placement_seed, prev.shards_by_node, cap=cap)
    except StakePlacementError as exc:
        raise InvalidEpochStateError(str(exc)) from None
    if expected != nxt.shards_by_node:
        raise InvalidEpochStateError(f"the shards of epoch {nxt.epoch} are not those its stakes give")


# ---------------------------------------------------------------- certificates


@dataclass(frozen=True)
class StateCertificate:
    """Precommits for ``digest`` in ``round`` of the agreement at height ``epoch``."""

    epoch: int
    round: int
    digest: bytes
    signatures: tuple[tuple[str, bytes], ...]  # (peer ID, Ed25519 signature), sorted by peer ID

    def __post_init__(self) -> None:
        _u64("epoch", self.epoch)
        if type(self.round) is not int or not 0 <= self.round < 2**31:
            raise InvalidEpochStateError("round out of range")
        if not isinstance(self.digest, bytes) or len(self.digest) != 32:
            raise InvalidEpochStateError("digest must be 32 bytes")
        if not isinstance(self.signatures, tuple) or len(self.signatures) > MAX_COMMITTEE:
            raise InvalidEpochStateError(f"at most {MAX_COMMITTEE} signatures")
        ids = []
        for pair in self.signatures:
            if not isinstance(pair, tuple) or len(pair) != 2 or not isinstance(pair[1], bytes):
                raise InvalidEpochStateError("signatures are (peer ID, bytes) pairs")
            ids.append(_peer("signer", pair[0]))
        if ids != sorted(set(ids)):
            raise InvalidEpochStateError("signers must be sorted and distinct")

    @classmethod
    def from_precommits(cls, epoch: int, round_: int, digest: bytes, precommits) -> StateCertificate:
        sigs = sorted({(v.sender, v.signature) for v in precommits if v.value_id == digest and v.round == round_})
        return cls(epoch, round_, digest, tuple(sigs))

    def verify(self, prev: EpochState, chain: bytes) -> None:
        """Raise unless the signers are members of ``prev``'s committee of quorum weight, each
        signature a precommit for (chain, height ``epoch``, ``round``, ``digest``)."""
        if self.epoch != prev.epoch + 1:
            raise InvalidEpochStateError(f"a certificate for epoch {self.epoch} checked against epoch {prev.epoch}")
        message = vote_signing_bytes(VoteKind.PRECOMMIT, chain, self.epoch, self.round, self.digest)
        weights = prev.weights
        weight = 0
        for peer, sig in self.signatures:
            if peer not in weights:
                raise InvalidEpochStateError(f"signer {peer} is not in the committee of epoch {prev.epoch}")
            if not verify_signature(peer, message, sig):
                raise InvalidEpochStateError(f"bad signature from {peer}")
            weight += weights[peer]
        if not prev.is_quorum(weight):
            raise InvalidEpochStateError(
                f"signers hold {weight} of {prev.n_shards} shards of epoch {prev.epoch}: not a quorum")

    def to_bytes(self) -> bytes:
        obj = {"digest": self.digest.hex(), "epoch": self.epoch, "round": self.round,
               "signatures": [[p, s.hex()] for p, s in self.signatures]}
        return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> StateCertificate:
        if not isinstance(data, (bytes, bytearray)) or len(data) > MAX_CERT_BYTES:
            raise InvalidEpochStateError(f"a certificate is at most {MAX_CERT_BYTES} bytes")
        try:
            obj = json.loads(data)
            if not isinstance(obj, dict) or sorted(obj) != ["digest", "epoch", "round", "signatures"]:
                raise InvalidEpochStateError("fields must be exactly digest, epoch, round, signatures")
            sigs = obj["signatures"]
            if not isinstance(sigs, list) or not all(
                    isinstance(x, list) and len(x) == 2 and isinstance(x[1], str) and len(x[1]) == 128
                    for x in sigs):
                raise InvalidEpochStateError("signatures must be [peer ID, 128 hex digits] pairs")
            if not isinstance(obj["digest"], str) or len(obj["digest"]) != 64:
                raise InvalidEpochStateError("digest must be 64 hex digits")
            return cls(obj["epoch"], obj["round"], bytes.fromhex(obj["digest"]),
                       tuple((p, bytes.fromhex(s)) for p, s in sigs))
        except (ValueError, TypeError, UnicodeDecodeError, RecursionError) as exc:
            if isinstance(exc, InvalidEpochStateError):
                raise
            raise InvalidEpochStateError(f"malformed certificate ({type(exc).__name__})") from None


def verify_link(prev: EpochState, nxt: EpochState, cert: StateCertificate, chain: bytes) -> None:
    """One link of the chain: a valid transition, certified by ``prev``'s committee."""
    check_transition(prev, nxt)
    if cert.digest != nxt.digest:
        raise InvalidEpochStateError(f"the certificate of epoch {nxt.epoch} is for another state")
    cert.verify(prev, chain)


def verify_chain(
    genesis_digest: bytes,
    genesis: EpochState,
    links: Sequence[tuple[EpochState, StateCertificate]],
    *,
    chain: bytes | None = None,
) -> EpochState:
    """The latest state of a chain from the pinned genesis digest, or InvalidEpochStateError.

    The chain ID that every precommit signs is ``chain``: by default the genesis
    state's digest; a network whose file pins a genesis hash of its own (the
    ledger's) passes that.  Either way nothing signed for one network verifies
    on another.
    """
    if genesis.digest != genesis_digest:
        raise InvalidEpochStateError("the genesis state does not match the pinned genesis digest")
    if genesis.epoch != 0:
        raise InvalidEpochStateError("the chain must start at epoch 0")
    state = genesis
    for nxt, cert in links:
        verify_link(state, nxt, cert, genesis_digest if chain is None else chain)
        state = nxt
    return state


def genesis_state_from(genesis) -> EpochState:
    """The epoch-0 state of a network file's genesis (the ledger's ``Genesis``: network,
    n_shards, committee of (peer_id, stake), storage_price, write_price, parameters).

    Read by attribute, so this module does not depend on the ledger's.  Shards are
    placed by stake; pass ``genesis.hash()`` as the chain ID wherever one is asked for.
    """
    return genesis_state(
        genesis.network, genesis.n_shards, {m.peer_id: m.stake for m in genesis.committee},
        prices=Prices(genesis.storage_price, genesis.write_price), parameters=dict(genesis.parameters))
