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

The state value and its encoding are in :mod:`.epoch_state_value`; this module builds
states, checks transitions and verifies certificates and chains (every name importable here).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from p2pwalrus.core.keys import verify_signature
from p2pwalrus.core.wal.agreement import (
    VoteKind, vote_signing_bytes
)
from p2pwalrus.core.wal.placement_stake import (
    StakePlacementError, assign_shards, default_cap, effective_cap
)
from ...errors import InvalidEpochStateError  # noqa: F401  (defined in errors.py; importable from here)
from .epoch_state_value import (  # noqa: F401  (importable from epoch_state, as before the split)
    EPOCH_STATE_VERSION, ZERO_DIGEST, MAX_STATE_BYTES, MAX_COMMITTEE, MAX_SHARDS, MAX_PARAMETERS, MAX_CREDITS,
    MAX_CERT_BYTES, _GENESIS_SEED_PERSON, SHARD_CAP, _u64, _peer, CommitteeMember, Prices, EpochState
)

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
