"""Tendermint's vocabulary (see :mod:`.agreement`): the signed messages (proposals, votes,
commits) with their bytes and their parsing, the quorum rules, the proposer of a round, and
what the machine outputs (broadcasts, timeouts, the decision). Importable from
``agreement`` as before."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum

from p2pwalrus.core.keys import (
    ED25519_SIGNATURE_SIZE, peer_id_from_public_key, public_key_from_peer_id, verify_signature
)
from p2pwalrus.core.thresholds import max_faulty
from ...errors import InvalidMessageError

#: The largest value (an encoded EpochState) a proposal may carry.
MAX_VALUE_SIZE = 2 << 20
MAX_ROUND = 2**31 - 1
MAX_HEIGHT = 2**63 - 1
#: Rounds ahead of ours whose messages are kept (later ones only bump the sender's round).
ROUND_WINDOW = 8
#: Proposals kept per round (an honest proposer sends one; an equivocating one, more).
MAX_PROPOSALS_PER_ROUND = 2

_PROPOSAL_TAG = b"p2pwalrus/tendermint/proposal/v1\x00"
_VOTE_TAG = b"p2pwalrus/tendermint/vote/v1\x00"
_VALUE_PERSON = b"p2pw-tm-value"
_PROPOSER_PERSON = b"p2pw-tm-proposer"
_WIRE_PROPOSAL = 0x01
_WIRE_VOTE = 0x02
_WIRE_COMMIT = 0x03
_HEAD = struct.Struct(">B32s64s")  # wire type, sender's Ed25519 public key, signature
_PROPOSAL_BODY = struct.Struct(">32sQIi")  # chain, height, round, valid round (-1: none)
_VOTE_BODY = struct.Struct(">B32sQIB32s")  # kind, chain, height, round, has value, value id
NIL = None
MAX_MEMBERS = 4096
_PROPOSAL_MAX = _HEAD.size + _PROPOSAL_BODY.size + MAX_VALUE_SIZE
_VOTE_SIZE = _HEAD.size + _VOTE_BODY.size
MAX_MESSAGE_SIZE = 1 + 4 + _PROPOSAL_MAX + 2 + MAX_MEMBERS * _VOTE_SIZE


def value_id(value: bytes) -> bytes:
    """``id(v)`` of the paper: Blake2b-256 of the value (the EpochState digest)."""
    return hashlib.blake2b(bytes(value), digest_size=32, person=_VALUE_PERSON).digest()


# ---------------------------------------------------------------- quorums


def _f(total: int) -> int:
    return max_faulty(total)


def is_quorum(weight: int, total: int) -> bool:
    """Weight of a quorum ("2f + 1"): ``3w >= 2n + 1``."""
    return 3 * weight >= 2 * total + 1


def is_skip_weight(weight: int, total: int) -> bool:
    """Weight that must include an honest member ("f + 1"): ``w >= f + 1``."""
    return weight >= _f(total) + 1


# ---------------------------------------------------------------- messages


class VoteKind(IntEnum):
    PREVOTE = 1
    PRECOMMIT = 2


def _check_common(chain: bytes, height: int, round_: int, sender: str) -> None:
    if not isinstance(chain, bytes) or len(chain) != 32:
        raise InvalidMessageError("chain ID must be 32 bytes")
    if type(height) is not int or not 0 <= height <= MAX_HEIGHT:
        raise InvalidMessageError("height out of range")
    if type(round_) is not int or not 0 <= round_ <= MAX_ROUND:
        raise InvalidMessageError("round out of range")
    try:
        public_key_from_peer_id(sender)
    except ValueError as exc:
        raise InvalidMessageError(f"sender: {exc}") from None


def proposal_signing_bytes(chain: bytes, height: int, round_: int, vid: bytes, valid_round: int) -> bytes:
    return _PROPOSAL_TAG + _PROPOSAL_BODY.pack(chain, height, round_, valid_round) + vid


def vote_signing_bytes(kind: VoteKind, chain: bytes, height: int, round_: int, vid: bytes | None) -> bytes:
    """What a vote's signature covers (a commit certificate re-derives it for each precommit)."""
    return _VOTE_TAG + _VOTE_BODY.pack(int(kind), chain, height, round_, vid is not None, vid or bytes(32))


@dataclass(frozen=True)
class Proposal:
    """``<PROPOSAL, h, round, v, validRound>`` signed by ``sender``; valid by construction."""

    chain: bytes
    height: int
    round: int
    value: bytes
    valid_round: int
    sender: str
    signature: bytes = field(repr=False)
    id: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_common(self.chain, self.height, self.round, self.sender)
        if not isinstance(self.value, bytes) or len(self.value) > MAX_VALUE_SIZE:
            raise InvalidMessageError(f"value must be bytes of at most {MAX_VALUE_SIZE}")
        if type(self.valid_round) is not int or not -1 <= self.valid_round < self.round:
            raise InvalidMessageError("valid round must be -1 or below the round")
        if not isinstance(self.signature, bytes) or len(self.signature) != ED25519_SIGNATURE_SIZE:
            raise InvalidMessageError("signature must be 64 bytes")
        object.__setattr__(self, "id", value_id(self.value))

    def signing_bytes(self) -> bytes:
        return proposal_signing_bytes(self.chain, self.height, self.round, self.id, self.valid_round)

    def to_bytes(self) -> bytes:
        return (_HEAD.pack(_WIRE_PROPOSAL, public_key_from_peer_id(self.sender), self.signature)
                + _PROPOSAL_BODY.pack(self.chain, self.height, self.round, self.valid_round) + self.value)


@dataclass(frozen=True)
class Vote:
    """``<PREVOTE|PRECOMMIT, h, round, id(v) or nil>`` signed by ``sender``."""

    kind: VoteKind
    chain: bytes
    height: int
    round: int
    value_id: bytes | None
    sender: str
    signature: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_common(self.chain, self.height, self.round, self.sender)
        if self.kind not in (VoteKind.PREVOTE, VoteKind.PRECOMMIT):
            raise InvalidMessageError("vote kind must be prevote or precommit")
        object.__setattr__(self, "kind", VoteKind(self.kind))
        if self.value_id is not None and (not isinstance(self.value_id, bytes) or len(self.value_id) != 32):
            raise InvalidMessageError("value ID must be 32 bytes or nil")
        if not isinstance(self.signature, bytes) or len(self.signature) != ED25519_SIGNATURE_SIZE:
            raise InvalidMessageError("signature must be 64 bytes")

    def signing_bytes(self) -> bytes:
        return vote_signing_bytes(self.kind, self.chain, self.height, self.round, self.value_id)

    def to_bytes(self) -> bytes:
        return (_HEAD.pack(_WIRE_VOTE, public_key_from_peer_id(self.sender), self.signature)
                + _VOTE_BODY.pack(int(self.kind), self.chain, self.height, self.round,
                                  self.value_id is not None, self.value_id or bytes(32)))


@dataclass(frozen=True)
class Commit:
    """A decision proof: the proposal and precommits of quorum weight for it in its round.

    Line 49 fires on exactly these messages; bundling them lets a node that
    lost some of them (or dropped a Byzantine member's vote as an
    equivocation) decide from one message that a decided peer gossips.
    """

    proposal: Proposal
    precommits: tuple[Vote, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.proposal, Proposal) or not isinstance(self.precommits, tuple):
            raise InvalidMessageError("a commit is a proposal and a tuple of precommits")
        if not 0 < len(self.precommits) <= MAX_MEMBERS:
            raise InvalidMessageError(f"a commit has 1..{MAX_MEMBERS} precommits")
        senders = set()
        for v in self.precommits:
            if (not isinstance(v, Vote) or v.kind != VoteKind.PRECOMMIT or v.round != self.proposal.round
                    or v.value_id != self.proposal.id or v.chain != self.proposal.chain
                    or v.height != self.proposal.height):
                raise InvalidMessageError("a commit's precommits must be for its proposal's value and round")
            if v.sender in senders:
                raise InvalidMessageError("a commit names a signer twice")
            senders.add(v.sender)

    @property
    def chain(self) -> bytes:
        return self.proposal.chain

    @property
    def height(self) -> int:
        return self.proposal.height

    @property
    def round(self) -> int:
        return self.proposal.round

    @property
    def sender(self) -> str:
        return self.proposal.sender

    def to_bytes(self) -> bytes:
        prop = self.proposal.to_bytes()
        return (bytes([_WIRE_COMMIT]) + len(prop).to_bytes(4, "big") + prop
                + len(self.precommits).to_bytes(2, "big") + b"".join(v.to_bytes() for v in self.precommits))


Message = Proposal | Vote | Commit
Signer = Callable[[bytes], bytes]


def sign_proposal(sign: Signer, sender: str, chain: bytes, height: int, round_: int,
                  value: bytes, valid_round: int) -> Proposal:
    sig = sign(proposal_signing_bytes(chain, height, round_, value_id(value), valid_round))
    return Proposal(chain, height, round_, bytes(value), valid_round, sender, bytes(sig))


def sign_vote(sign: Signer, sender: str, kind: VoteKind, chain: bytes, height: int, round_: int,
              vid: bytes | None) -> Vote:
    sig = sign(vote_signing_bytes(kind, chain, height, round_, vid))
    return Vote(VoteKind(kind), chain, height, round_, vid, sender, bytes(sig))


def parse_message(data: bytes, *, chain: bytes, height: int, members: Mapping[str, int]) -> Message:
    """Bytes from a peer to a message of this instance, or InvalidMessageError.

    Checks the length bound, the exact layout, the chain ID and height, that
    the signer is a member, and the signature.  The signer need not be the
    peer that relayed the bytes: messages are relayed as they are.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise InvalidMessageError("not bytes")
    data = bytes(data)
    if len(data) > MAX_MESSAGE_SIZE:
        raise InvalidMessageError(f"larger than {MAX_MESSAGE_SIZE} bytes")
    if data[:1] == bytes([_WIRE_COMMIT]):
        return _parse_commit(data, chain=chain, height=height, members=members)
    if len(data) < _HEAD.size:
        raise InvalidMessageError("truncated")
    wire, pub, sig = _HEAD.unpack_from(data)
    sender = peer_id_from_public_key(pub)
    rest = data[_HEAD.size:]
    msg: Message
    try:
        if wire == _WIRE_PROPOSAL:
            if len(rest) < _PROPOSAL_BODY.size:
                raise InvalidMessageError("truncated proposal")
            c, h, r, vr = _PROPOSAL_BODY.unpack_from(rest)
            msg = Proposal(c, h, r, rest[_PROPOSAL_BODY.size:], vr, sender, sig)
        elif wire == _WIRE_VOTE:
            if len(rest) != _VOTE_BODY.size:
                raise InvalidMessageError("a vote has a fixed size")
            kind, c, h, r, has, vid = _VOTE_BODY.unpack(rest)
            if has not in (0, 1) or (not has and vid != bytes(32)):
                raise InvalidMessageError("nil flag must be 0 or 1, with a zero ID when nil")
            if kind not in (1, 2):
                raise InvalidMessageError("vote kind must be prevote or precommit")
            msg = Vote(VoteKind(kind), c, h, r, vid if has else None, sender, sig)
        else:
            raise InvalidMessageError(f"unknown message type {wire}")
    except struct.error:
        raise InvalidMessageError("malformed") from None
    if msg.chain != chain:
        raise InvalidMessageError("for another network (chain ID differs)")
    if msg.height != height:
        raise InvalidMessageError(f"for height {msg.height}, not {height}")
    if sender not in members:
        raise InvalidMessageError("sender is not a committee member")
    if not verify_signature(sender, msg.signing_bytes(), sig):
        raise InvalidMessageError("bad signature")
    return msg


def message_height(data: bytes) -> int | None:
    """The height a message claims, read without any check (to route it before parsing);
    None if the bytes are too short to say."""
    data = bytes(data[:5 + _HEAD.size + _PROPOSAL_BODY.size])
    if data[:1] == bytes([_WIRE_COMMIT]):
        data = data[5:]
    if len(data) < _HEAD.size + 1 + 32 + 8:
        return None
    offset = _HEAD.size + 32 + (1 if data[0] == _WIRE_VOTE else 0)
    return int.from_bytes(data[offset:offset + 8], "big")


def _parse_commit(data: bytes, *, chain: bytes, height: int, members: Mapping[str, int]) -> Commit:
    if len(data) < 5:
        raise InvalidMessageError("truncated commit")
    plen = int.from_bytes(data[1:5], "big")
    if plen > _PROPOSAL_MAX or len(data) < 5 + plen + 2:
        raise InvalidMessageError("truncated commit")
    prop = parse_message(data[5:5 + plen], chain=chain, height=height, members=members)
    if not isinstance(prop, Proposal):
        raise InvalidMessageError("a commit starts with a proposal")
    count = int.from_bytes(data[5 + plen:7 + plen], "big")
    body = data[7 + plen:]
    if len(body) != count * _VOTE_SIZE:
        raise InvalidMessageError("a commit's votes have a fixed size")
    votes = []
    for i in range(count):
        v = parse_message(body[i * _VOTE_SIZE:(i + 1) * _VOTE_SIZE], chain=chain, height=height, members=members)
        if not isinstance(v, Vote):
            raise InvalidMessageError("a commit carries votes")
        votes.append(v)
    commit = Commit(prop, tuple(votes))
    if prop.sender != proposer_for(members, chain, height, prop.round):
        raise InvalidMessageError("a commit's proposal is not from that round's proposer")
    if not is_quorum(sum(members[v.sender] for v in votes), sum(members.values())):
        raise InvalidMessageError("a commit's precommits do not weigh a quorum")
    return commit


# ---------------------------------------------------------------- outputs


class Step(IntEnum):
    PROPOSE = 0
    PREVOTE = 1
    PRECOMMIT = 2


@dataclass(frozen=True)
class Broadcast:
    message: Message


@dataclass(frozen=True)
class ScheduleTimeout:
    """Call :meth:`Tendermint.on_timeout` with this after ``delay`` seconds."""

    step: Step
    height: int
    round: int
    delay: float


@dataclass(frozen=True)
class Decided:
    """The decision: the value, its round, and precommits of quorum weight for it."""

    value: bytes
    round: int
    precommits: tuple[Vote, ...]

    @property
    def value_id(self) -> bytes:
        return value_id(self.value)


Output = Broadcast | ScheduleTimeout | Decided


@dataclass(frozen=True)
class Timeouts:
    """``timeoutX(r) = X + r * delta`` seconds: growing, so rounds outlast any delay after GST."""

    propose: float = 3.0
    prevote: float = 1.0
    precommit: float = 1.0
    delta: float = 0.5

    def of(self, step: Step, round_: int) -> float:
        base = {Step.PROPOSE: self.propose, Step.PREVOTE: self.prevote, Step.PRECOMMIT: self.precommit}[step]
        return base + round_ * self.delta


def proposer_for(members: Mapping[str, int], chain: bytes, height: int, round_: int) -> str:
    """``proposer(h, round)``: round robin over members of non-zero weight, from a per-height offset."""
    order = sorted(p for p, w in members.items() if w > 0)
    if not order:
        raise ValueError("no member has weight")
    h = hashlib.blake2b(chain + height.to_bytes(8, "big"), digest_size=8, person=_PROPOSER_PERSON)
    offset = int.from_bytes(h.digest(), "big") % len(order)
    return order[(offset + round_) % len(order)]
