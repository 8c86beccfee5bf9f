"""Signed, expiring node records and the live set built from them (pure: no I/O, no clock).

Wire form of a SignedNodeRecord::

    0x01 (format version) | 64-byte Ed25519 signature | canonical JSON of the record

The signature covers ``RECORD_SIGNING_DOMAIN + canonical JSON``; the JSON must be
the canonical encoding (sorted keys, no spaces), so each record has one byte
form. The signer is the record's ``peer_id``, checked from the peer ID alone.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from enum import Enum

from p2pwalrus.core.keys import (
    ED25519_SIGNATURE_SIZE,
    public_key_from_peer_id,
    sign,
    verify_signature,
)
from p2pwalrus.errors import InvalidRecordError, StaleRecordError

RECORD_FORMAT = 1
RECORD_SIGNING_DOMAIN = b"p2pwalrus/node-record/v1\n"
MAX_RECORD_SIZE = 4096
MAX_ADDRS = 16
MAX_ADDR_LEN = 256
MAX_VERSION_LEN = 64
NETWORK_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
DEFAULT_MAX_CLOCK_SKEW = 60.0  # issued_at may be at most this far in our future (seconds)
DEFAULT_MAX_LIFETIME = 3600.0  # expires_at - issued_at may be at most this
_FIELDS = ("addrs", "capacity", "expires_at", "issued_at", "network", "peer_id", "seq", "version")
_MAX_INT = 2**63 - 1


def _check_int(name: str, value: object) -> int:
    if type(value) is not int or not 0 <= value <= _MAX_INT:
        raise InvalidRecordError(f"{name} must be a non-negative 64-bit integer")
    return value


def _check_time(name: str, value: object) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise InvalidRecordError(f"{name} must be a finite non-negative number")
    return float(value)


@dataclass(frozen=True)
class NodeRecord:
    """What a storage node says about itself. Validated at construction."""

    network: str
    peer_id: str
    addrs: tuple[str, ...]
    capacity: int
    version: str
    issued_at: float
    expires_at: float
    seq: int

    def __post_init__(self) -> None:
        if not isinstance(self.network, str) or not NETWORK_NAME_RE.match(self.network):
            raise InvalidRecordError("network name must match [a-z0-9][a-z0-9._-]{0,31}")
        if not isinstance(self.peer_id, str):
            raise InvalidRecordError("peer_id must be a string")
        try:
            public_key_from_peer_id(self.peer_id)
        except ValueError as exc:
            raise InvalidRecordError(f"peer_id: {exc}") from None
        if not isinstance(self.addrs, tuple) or len(self.addrs) > MAX_ADDRS:
            raise InvalidRecordError(f"addrs must be a tuple of at most {MAX_ADDRS} strings")
        for a in self.addrs:
            if not isinstance(a, str) or not 0 < len(a) <= MAX_ADDR_LEN or not a.startswith("/") or not a.isascii():
                raise InvalidRecordError(f"each addr must be an ASCII multiaddr of at most {MAX_ADDR_LEN} chars")
        _check_int("capacity", self.capacity)
        _check_int("seq", self.seq)
        if not isinstance(self.version, str) or len(self.version) > MAX_VERSION_LEN or not self.version.isascii():
            raise InvalidRecordError(f"version must be an ASCII string of at most {MAX_VERSION_LEN} chars")
        object.__setattr__(self, "issued_at", _check_time("issued_at", self.issued_at))
        object.__setattr__(self, "expires_at", _check_time("expires_at", self.expires_at))
        if self.expires_at <= self.issued_at:
            raise InvalidRecordError("expires_at must be after issued_at")

    def to_bytes(self) -> bytes:
        """Canonical JSON: sorted keys, no spaces, ASCII."""
        obj = {
            "addrs": list(self.addrs),
            "capacity": self.capacity,
            "expires_at": self.expires_at,
            "issued_at": self.issued_at,
            "network": self.network,
            "peer_id": self.peer_id,
            "seq": self.seq,
            "version": self.version,
        }
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()

    @classmethod
    def from_json(cls, data: bytes) -> NodeRecord:
        """Parse canonical JSON (InvalidRecordError on any deviation)."""
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise InvalidRecordError("record is not JSON") from None
        if not isinstance(obj, dict) or tuple(sorted(obj)) != _FIELDS:
            raise InvalidRecordError(f"record must have exactly the fields {', '.join(_FIELDS)}")
        if not isinstance(obj["addrs"], list):
            raise InvalidRecordError("addrs must be a list")
        record = cls(
            network=obj["network"],
            peer_id=obj["peer_id"],
            addrs=tuple(obj["addrs"]),
            capacity=obj["capacity"],
            version=obj["version"],
            issued_at=obj["issued_at"],
            expires_at=obj["expires_at"],
            seq=obj["seq"],
        )
        if record.to_bytes() != bytes(data):
            raise InvalidRecordError("record JSON is not in canonical form")
        return record


@dataclass(frozen=True)
class SignedNodeRecord:
    """A NodeRecord with its issuer's signature. Build with ``sign_record`` or ``from_bytes``."""

    record: NodeRecord
    signature: bytes
    _body: bytes = field(default=b"", repr=False, compare=False)

    @property
    def peer_id(self) -> str:
        return self.record.peer_id

    def to_bytes(self) -> bytes:
        return bytes([RECORD_FORMAT]) + self.signature + (self._body or self.record.to_bytes())

    def verify(self) -> bool:
        body = self._body or self.record.to_bytes()
        return verify_signature(self.record.peer_id, RECORD_SIGNING_DOMAIN + body, self.signature)

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        network: str,
        now: float,
        max_size: int = MAX_RECORD_SIZE,
        max_clock_skew: float = DEFAULT_MAX_CLOCK_SKEW,
        max_lifetime: float = DEFAULT_MAX_LIFETIME,
    ) -> SignedNodeRecord:
        """Parse and fully validate a record received from a peer.

        Checks, in order: size (before parsing), format, schema and types,
        canonical form, network name, issue time not beyond ``now +
        max_clock_skew``, lifetime bound, not expired at ``now``, signature by
        ``peer_id``. Raises InvalidRecordError (a ProtocolError) with a reason.
        """
        if len(data) > max_size:
            raise InvalidRecordError(f"record is {len(data)} bytes, over the {max_size}-byte limit")
        if len(data) < 1 + ED25519_SIGNATURE_SIZE + 2 or data[0] != RECORD_FORMAT:
            raise InvalidRecordError("unknown record format")
        signature = bytes(data[1 : 1 + ED25519_SIGNATURE_SIZE])
        body = bytes(data[1 + ED25519_SIGNATURE_SIZE :])
        record = NodeRecord.from_json(body)
        if record.network != network:
            raise InvalidRecordError(f"record is for network {record.network!r}, not {network!r}")
        if record.issued_at > now + max_clock_skew:
            raise StaleRecordError("record issued in the future (clock skew?)")
        if record.expires_at - record.issued_at > max_lifetime:
            raise InvalidRecordError("record lifetime too long")
        if record.expires_at <= now:
            raise StaleRecordError("record expired")
        signed = cls(record, signature, body)
        if not signed.verify():
            raise InvalidRecordError("bad signature")
        return signed


def sign_record(signer: object, record: NodeRecord) -> SignedNodeRecord:
    """Sign ``record`` with the key pair (or private key) of ``record.peer_id``."""
    body = record.to_bytes()
    signature = sign(signer, RECORD_SIGNING_DOMAIN + body)  # type: ignore[arg-type]
    signed = SignedNodeRecord(record, signature, body)
    if not signed.verify():
        raise ValueError("the signing key does not belong to record.peer_id")
    return signed


class ChangeKind(Enum):
    JOINED = "joined"
    LEFT = "left"
    UPDATED = "updated"  # addresses, capacity or version changed


@dataclass(frozen=True)
class MembershipChange:
    kind: ChangeKind
    peer_id: str
    record: NodeRecord  # the newest record (for LEFT: the last one known)


@dataclass
class _Entry:
    signed: SignedNodeRecord
    refreshed_at: float


class LiveSet:
    """Node ID -> latest valid record. Pure: every call takes ``now``.

    A node is live from a valid record until that record expires, or until it is marked
    down (``mark_down``): liveness comes from the connections nodes hold, not from records
    re-sent on a timer. A down mark refuses records up to the seq it was made at, so a
    dead node's last record, pulled late from a peer that still holds it, cannot revive it;
    a newer record (the node restarted, or refutes the mark) or ``offer(..., direct=True)``
    (we reach the node ourselves) lifts it. ``ttl`` bounds how long a record counts from
    its signing. Records must be validated (``SignedNodeRecord.from_bytes``) before they
    are offered.
    """

    def __init__(self, ttl: float, max_members: int = 10_000):
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.ttl = ttl
        self.max_members = max_members
        self._entries: dict[str, _Entry] = {}
        self._down: dict[str, int] = {}  # peer ID -> seq of the newest record it was marked down at
        # Sorted IDs and digest, kept until the entries change: every heartbeat asks for the
        # digest twice, and at 100 members sorting and hashing them was a visible share of it.
        self._sorted: list[str] | None = None
        self._digest: bytes | None = None

    def _set(self, peer_id: str, entry: "_Entry") -> None:
        self._entries[peer_id] = entry
        self._sorted = self._digest = None

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self._entries

    def get(self, peer_id: str) -> SignedNodeRecord | None:
        entry = self._entries.get(peer_id)
        return entry.signed if entry else None

    def peer_ids(self) -> list[str]:
        if self._sorted is None:
            self._sorted = sorted(self._entries)
        return list(self._sorted)

    def signed_records(self) -> list[SignedNodeRecord]:
        return [self._entries[p].signed for p in self.peer_ids()]

    def records(self) -> list[NodeRecord]:
        return [s.record for s in self.signed_records()]

    def digest(self) -> bytes:
        """16 bytes naming the set of (peer ID, seq) held: equal digests, equal live sets."""
        if self._digest is None:
            h = hashlib.blake2b(digest_size=16)
            for p in self.peer_ids():
                h.update(f"{p}:{self._entries[p].signed.record.seq};".encode())
            self._digest = h.digest()
        return self._digest

    def down_peers(self) -> list[str]:
        return sorted(self._down)

    def is_down(self, peer_id: str) -> bool:
        return peer_id in self._down

    def deadline(self, peer_id: str) -> float | None:
        entry = self._entries.get(peer_id)
        if entry is None:
            return None
        return min(entry.signed.record.expires_at, entry.refreshed_at + self.ttl)

    def next_deadline(self) -> float | None:
        """The earliest time at which some member will drop out (None if empty)."""
        return min((self.deadline(p) for p in self._entries), default=None)  # type: ignore[type-var]

    def offer(self, signed: SignedNodeRecord, now: float, *, direct: bool = False) -> MembershipChange | None:
        """Take a validated record; return the change it makes (None if stale or a repeat).

        ``direct``: the record came from the node itself over a connection we hold, which
        proves it is up now: it lifts a down mark even at the same seq."""
        record = signed.record
        # A record counts from when it was signed, not from when it reached us. (Clocks
        # may differ by up to the records' allowed skew.)
        refreshed = min(now, record.issued_at)
        if record.expires_at <= now or refreshed + self.ttl <= now:
            return None
        down_seq = self._down.get(record.peer_id)
        if down_seq is not None:
            if record.seq <= down_seq and not direct:
                return None
            del self._down[record.peer_id]
        entry = self._entries.get(record.peer_id)
        if entry is None:
            if len(self._entries) >= self.max_members:
                return None
            self._set(record.peer_id, _Entry(signed, refreshed))
            return MembershipChange(ChangeKind.JOINED, record.peer_id, record)
        old = entry.signed.record
        if record.seq <= old.seq:
            return None
        self._set(record.peer_id, _Entry(signed, refreshed))
        if (old.addrs, old.capacity, old.version) != (record.addrs, record.capacity, record.version):
            return MembershipChange(ChangeKind.UPDATED, record.peer_id, record)
        return None

    def mark_down(self, peer_id: str, seq: int | None = None) -> MembershipChange | None:
        """The node is gone (its connections died and it cannot be reached): drop it and
        refuse its records up to ``seq`` (default: the one held). Returns the LEFT change."""
        entry = self._entries.get(peer_id)
        held = entry.signed.record.seq if entry else -1
        mark = max(held, seq if seq is not None else -1, self._down.get(peer_id, -1))
        if mark < 0:
            return None
        self._down[peer_id] = mark
        if len(self._down) > self.max_members:  # the oldest marks go first
            for old in list(self._down)[: len(self._down) - self.max_members]:
                del self._down[old]
        return self.remove(peer_id)

    def remove(self, peer_id: str) -> MembershipChange | None:
        entry = self._entries.pop(peer_id, None)
        self._sorted = self._digest = None
        return MembershipChange(ChangeKind.LEFT, peer_id, entry.signed.record) if entry else None

    def expire(self, now: float) -> list[MembershipChange]:
        """Drop every member whose record has expired; return the LEFT changes."""
        gone = [p for p in self._entries if self.deadline(p) <= now]  # type: ignore[operator]
        return [c for c in (self.remove(p) for p in sorted(gone)) if c is not None]
