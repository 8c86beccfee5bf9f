"""A storage node's signed governance vote (pure): prices, capacity, parameter proposals.

Each node signs, with its own key, the storage price and write price it votes for (FROST per
1 MiB unit of encoded size: per epoch, and once per write), the capacity it offers, and any
parameter changes it proposes. The vote names the network (its genesis hash) and carries
the time it was made: the newest vote of a node replaces its older ones, so an old vote
replayed by someone else changes nothing. Whoever proposes the next epoch state gathers
the committee's votes and applies Walrus's rules to them (``pricing.economics_for_next``):
quorum-below for prices, a quorum of weight for a parameter change.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from ..keys import sign, verify_signature
from . import fields
from .pricing import PriceVote
from ...errors import InvalidVoteError  # noqa: F401  (defined in errors.py; importable from here)

_VOTE_TAG = b"p2pwalrus/node-vote/v1\x00"
MAX_PROPOSALS = 16


def _u64(value, name: str) -> int:
    return fields.u64(value, name, InvalidVoteError)


@dataclass(frozen=True)
class NodeVote:
    genesis: bytes  # the network's genesis hash
    node: str  # the voting node's peer ID
    issued: int  # unix seconds: the newest vote of a node counts
    storage_price: int
    write_price: int
    capacity: int = 0  # bytes offered (0: not said)
    proposals: tuple[tuple[str, int], ...] = ()  # parameter changes proposed, sorted by name
    commission_bps: int | None = None  # this node's commission on its rewards (None: the network's parameter)

    def __post_init__(self) -> None:
        if not isinstance(self.genesis, bytes) or len(self.genesis) != 32:
            raise InvalidVoteError("genesis hash must be 32 bytes")
        if not isinstance(self.node, str) or not 0 < len(self.node) < 128:
            raise InvalidVoteError("node must be a peer ID")
        for name in ("issued", "storage_price", "write_price", "capacity"):
            _u64(getattr(self, name), name)
        names = [k for k, _ in self.proposals]
        if len(self.proposals) > MAX_PROPOSALS or names != sorted(set(names)):
            raise InvalidVoteError(f"at most {MAX_PROPOSALS} proposals, distinct and sorted by name")
        for k, v in self.proposals:
            if not isinstance(k, str) or not k.isidentifier() or len(k) > 48:
                raise InvalidVoteError("a parameter name is an identifier of at most 48 characters")
            _u64(v, f"proposal {k}")
        if self.commission_bps is not None and (type(self.commission_bps) is not int
                                                or not 0 <= self.commission_bps <= 10_000):
            raise InvalidVoteError("commission_bps must be an integer in 0..10000 (basis points)")

    @property
    def prices(self) -> PriceVote:
        return PriceVote(self.storage_price, self.write_price)

    def signing_bytes(self) -> bytes:
        body = json.dumps({"node": self.node, "issued": self.issued, "storage_price": self.storage_price,
                           "write_price": self.write_price, "capacity": self.capacity,
                           "proposals": [[k, v] for k, v in self.proposals],
                           "commission_bps": self.commission_bps},
                          sort_keys=True, separators=(",", ":")).encode()
        return _VOTE_TAG + self.genesis + struct.pack("<I", len(body)) + body

    def to_json(self) -> dict:
        return {"genesis": self.genesis.hex(), "node": self.node, "issued": self.issued,
                "storage_price": self.storage_price, "write_price": self.write_price, "capacity": self.capacity,
                "proposals": dict(self.proposals), "commission_bps": self.commission_bps}

    @classmethod
    def from_json(cls, obj) -> "NodeVote":
        if not isinstance(obj, dict):
            raise InvalidVoteError("a vote is a JSON object")
        try:
            props = obj.get("proposals", {})
            if not isinstance(props, dict):
                raise InvalidVoteError("proposals must be an object")
            return cls(bytes.fromhex(obj["genesis"]), obj["node"], obj["issued"], obj["storage_price"],
                       obj["write_price"], obj.get("capacity", 0), tuple(sorted(props.items())),
                       obj.get("commission_bps"))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InvalidVoteError):
                raise
            raise InvalidVoteError(f"malformed vote ({exc})") from None


@dataclass(frozen=True)
class SignedNodeVote:
    vote: NodeVote
    signature: bytes

    def __post_init__(self) -> None:
        if not verify_signature(self.vote.node, self.vote.signing_bytes(), self.signature):
            raise InvalidVoteError(f"the vote's signature does not hold for {self.vote.node}")

    def to_json(self) -> dict:
        return {"vote": self.vote.to_json(), "signature": self.signature.hex()}

    @classmethod
    def from_json(cls, obj) -> "SignedNodeVote":
        if not isinstance(obj, dict) or not isinstance(obj.get("signature"), str) or len(obj["signature"]) != 128:
            raise InvalidVoteError("a signed vote is {vote, signature (128 hex digits)}")
        try:
            signature = bytes.fromhex(obj["signature"])
        except ValueError:
            raise InvalidVoteError("bad hex") from None
        return cls(NodeVote.from_json(obj.get("vote")), signature)


def sign_node_vote(keypair, vote: NodeVote) -> SignedNodeVote:
    return SignedNodeVote(vote, sign(keypair, vote.signing_bytes()))


def newest(current: SignedNodeVote | None, candidate: SignedNodeVote) -> SignedNodeVote:
    return candidate if current is None or candidate.vote.issued > current.vote.issued else current
