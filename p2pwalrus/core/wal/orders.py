"""FastPay orders, authority votes and certificates (pure).

An order ``{genesis hash, epoch, sender, sequence, recipient, amount, kind, payload}``
is signed by the sender's Ed25519 key (the account *is* the key: its address is the
peer ID text, "12D3KooW..."). An authority's vote is its signature over the order's
digest; a certificate is the signed order with votes of quorum weight (committee.py).

Every value here is checked when it is built, so one that exists is well formed and its
sender's signature holds: parse a peer's JSON with ``from_json`` at the boundary. A
certificate's votes depend on the committee of its epoch: ``Certificate.check``.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from dataclasses import dataclass
from functools import cached_property

from ..keys import sign, verify_signature
from . import fields
from .amounts import MAX_AMOUNT
from .committee import Committee
from ...errors import InvalidOrderError  # noqa: F401  (defined in errors.py; importable from here)

_ORDER_TAG = b"p2pwalrus/wal-order/v1\x00"
_VOTE_TAG = b"p2pwalrus/wal-vote/v1\x00"
MAX_PAYLOAD = 256
MAX_VOTES = 1000


class OrderKind(enum.Enum):
    TRANSFER = "transfer"  # recipient: an account
    STORAGE = "storage"  # pay for storage; recipient: none (the storage fund), payload: StoragePayload
    STAKE = "stake"  # recipient: a committee node; the amount moves from the balance to stake with it
    UNSTAKE = "unstake"  # recipient: a committee node; the amount moves from stake with it to the balance


_KIND_CODE = {OrderKind.TRANSFER: 0, OrderKind.STORAGE: 1, OrderKind.STAKE: 2, OrderKind.UNSTAKE: 3}


def _check_u64(value, name: str) -> int:
    return fields.u64(value, name, InvalidOrderError)


def _check_peer(value, name: str) -> str:
    return fields.peer_id(value, name, InvalidOrderError)


def _str(text: str) -> bytes:
    raw = text.encode()
    return bytes([len(raw)]) + raw


@dataclass(frozen=True)
class StoragePayload:
    """What a storage payment pays for (issue 16 prices it): a blob, its encoded size, epochs."""

    blob_id: bytes
    encoded_size: int
    start_epoch: int
    end_epoch: int  # exclusive

    def __post_init__(self) -> None:
        if not isinstance(self.blob_id, bytes) or len(self.blob_id) != 32:
            raise InvalidOrderError("a storage payment names a 32-byte blob ID")
        for name in ("encoded_size", "start_epoch", "end_epoch"):
            _check_u64(getattr(self, name), name)
        if self.end_epoch <= self.start_epoch:
            raise InvalidOrderError("a storage payment's end epoch must be after its start epoch")

    def to_bytes(self) -> bytes:
        return self.blob_id + struct.pack("<QQQ", self.encoded_size, self.start_epoch, self.end_epoch)

    @classmethod
    def from_bytes(cls, raw: bytes) -> "StoragePayload":
        if len(raw) != 56:
            raise InvalidOrderError("a storage payment's payload is 56 bytes")
        size, start, end = struct.unpack("<QQQ", raw[32:])
        return cls(bytes(raw[:32]), size, start, end)


@dataclass(frozen=True)
class Order:
    genesis: bytes  # the network's genesis hash
    epoch: int  # the committee epoch it is signed under
    sender: str
    sequence: int
    recipient: str  # "" for a storage payment
    amount: int  # FROST
    kind: OrderKind
    payload: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.genesis, bytes) or len(self.genesis) != 32:
            raise InvalidOrderError("genesis hash must be 32 bytes")
        _check_u64(self.epoch, "epoch")
        _check_u64(self.sequence, "sequence")
        _check_peer(self.sender, "sender")
        if not isinstance(self.kind, OrderKind):
            raise InvalidOrderError("kind must be transfer, storage, stake or unstake")
        if type(self.amount) is not int or not 0 < self.amount <= MAX_AMOUNT:
            raise InvalidOrderError(f"amount must be 1..{MAX_AMOUNT} FROST")
        if not isinstance(self.payload, bytes) or len(self.payload) > MAX_PAYLOAD:
            raise InvalidOrderError(f"payload must be at most {MAX_PAYLOAD} bytes")
        if self.kind is OrderKind.STORAGE:
            if self.recipient != "":
                raise InvalidOrderError("a storage payment has no recipient (it pays the storage fund)")
            StoragePayload.from_bytes(self.payload)
        else:
            _check_peer(self.recipient, "recipient")
            if self.payload:
                raise InvalidOrderError(f"a {self.kind.value} order has no payload")
            if self.kind is OrderKind.TRANSFER and self.recipient == self.sender:
                raise InvalidOrderError("a transfer to oneself moves nothing")

    @cached_property
    def signing_bytes(self) -> bytes:
        return b"".join([
            _ORDER_TAG, self.genesis, struct.pack("<Q", self.epoch), _str(self.sender),
            struct.pack("<Q", self.sequence), _str(self.recipient), struct.pack("<QB", self.amount, _KIND_CODE[self.kind]),
            struct.pack("<I", len(self.payload)), self.payload,
        ])

    @cached_property
    def digest(self) -> bytes:
        return hashlib.blake2b(self.signing_bytes, digest_size=32).digest()

    @property
    def storage(self) -> StoragePayload | None:
        return StoragePayload.from_bytes(self.payload) if self.kind is OrderKind.STORAGE else None

    def to_json(self) -> dict:
        return {"genesis": self.genesis.hex(), "epoch": self.epoch, "sender": self.sender,
                "sequence": self.sequence, "recipient": self.recipient, "amount": self.amount,
                "kind": self.kind.value, "payload": self.payload.hex()}

    @classmethod
    def from_json(cls, obj) -> "Order":
        if not isinstance(obj, dict):
            raise InvalidOrderError("an order is a JSON object")
        try:
            kind = OrderKind(obj["kind"])
            genesis, payload = _hex(obj["genesis"], 64), _hex(obj.get("payload", ""), 2 * MAX_PAYLOAD)
            recipient = obj["recipient"]
            if not isinstance(recipient, str):
                raise InvalidOrderError("recipient must be a string")
            return cls(genesis, obj["epoch"], obj["sender"], obj["sequence"], recipient, obj["amount"], kind, payload)
        except KeyError as exc:
            raise InvalidOrderError(f"order is missing {exc.args[0]!r}") from None
        except (ValueError, TypeError) as exc:
            if isinstance(exc, InvalidOrderError):
                raise
            raise InvalidOrderError(f"malformed order ({exc})") from None


def _hex(value, max_chars: int) -> bytes:
    if not isinstance(value, str) or len(value) > max_chars:
        raise InvalidOrderError(f"expected hex of at most {max_chars} characters")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise InvalidOrderError("bad hex") from None


@dataclass(frozen=True)
class SignedOrder:
    """An order with its sender's signature, which holds (checked when built)."""

    order: Order
    signature: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.order, Order):
            raise InvalidOrderError("not an order")
        if not verify_signature(self.order.sender, self.order.signing_bytes, self.signature):
            raise InvalidOrderError("the sender's signature does not hold")

    def to_json(self) -> dict:
        return {"order": self.order.to_json(), "signature": self.signature.hex()}

    @classmethod
    def from_json(cls, obj) -> "SignedOrder":
        if not isinstance(obj, dict):
            raise InvalidOrderError("a signed order is a JSON object")
        return cls(Order.from_json(obj.get("order")), _hex(obj.get("signature"), 128))


def sign_order(keypair, order: Order) -> SignedOrder:
    """Sign as the sender (``keypair`` must be the sender's key)."""
    return SignedOrder(order, sign(keypair, order.signing_bytes))


def vote_message(order: Order) -> bytes:
    return _VOTE_TAG + order.digest


@dataclass(frozen=True)
class Vote:
    authority: str
    signature: bytes

    def __post_init__(self) -> None:
        _check_peer(self.authority, "authority")
        if not isinstance(self.signature, bytes) or len(self.signature) != 64:
            raise InvalidOrderError("a vote's signature is 64 bytes")

    def holds_for(self, order: Order) -> bool:
        return verify_signature(self.authority, vote_message(order), self.signature)

    def to_json(self) -> dict:
        return {"authority": self.authority, "signature": self.signature.hex()}

    @classmethod
    def from_json(cls, obj) -> "Vote":
        if not isinstance(obj, dict):
            raise InvalidOrderError("a vote is a JSON object")
        return cls(obj.get("authority"), _hex(obj.get("signature"), 128))


def sign_vote(keypair, authority: str, order: Order) -> Vote:
    return Vote(authority, sign(keypair, vote_message(order)))


@dataclass(frozen=True)
class Certificate:
    """A signed order and the votes of distinct authorities, sorted by authority."""

    signed: SignedOrder
    votes: tuple[Vote, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.signed, SignedOrder):
            raise InvalidOrderError("a certificate holds a signed order")
        if not 0 < len(self.votes) <= MAX_VOTES:
            raise InvalidOrderError(f"a certificate holds 1 to {MAX_VOTES} votes")
        names = [v.authority for v in self.votes]
        if names != sorted(set(names)):
            raise InvalidOrderError("a certificate's votes must be from distinct authorities, sorted")

    @property
    def order(self) -> Order:
        return self.signed.order

    def check(self, committee: Committee) -> None:
        """InvalidOrderError unless every vote is a member's and holds, and together they are a quorum."""
        order = self.order
        if committee.epoch != order.epoch:
            raise InvalidOrderError(f"order of epoch {order.epoch} checked against the committee of {committee.epoch}")
        weight = 0
        for vote in self.votes:
            w = committee.weight(vote.authority)
            if w == 0:
                raise InvalidOrderError(f"vote from {vote.authority}, not a committee member with shards")
            if not vote.holds_for(order):
                raise InvalidOrderError(f"the vote of {vote.authority} does not hold")
            weight += w
        if not committee.is_quorum(weight):
            raise InvalidOrderError(f"votes weigh {weight} shards; a certificate needs {committee.quorum_weight}")

    def to_json(self) -> dict:
        return {"signed": self.signed.to_json(), "votes": [v.to_json() for v in self.votes]}

    @classmethod
    def from_json(cls, obj) -> "Certificate":
        if not isinstance(obj, dict) or not isinstance(obj.get("votes"), list):
            raise InvalidOrderError("a certificate is a JSON object with a list of votes")
        if len(obj["votes"]) > MAX_VOTES:
            raise InvalidOrderError(f"more than {MAX_VOTES} votes")
        return cls(SignedOrder.from_json(obj.get("signed")), tuple(Vote.from_json(v) for v in obj["votes"]))


def make_certificate(signed: SignedOrder, votes) -> Certificate:
    """A certificate from votes gathered in any order (duplicates from one authority dropped)."""
    by_authority = {v.authority: v for v in votes}
    return Certificate(signed, tuple(by_authority[a] for a in sorted(by_authority)))
