"""Liveness messages and rules (pure: no I/O, no clock).

Nodes learn who is up from the connections they hold, not from records re-sent on a
timer. Each node keeps one heartbeat link (a long-lived stream) to each peer it watches;
both ends send a small ``Beat`` every few seconds, carrying digests of their live set and
certificate set, so anti-entropy pulls only when two nodes differ. A node that loses a
link and cannot reopen it says so once, in a signed ``DownReport``; whoever receives one
checks it by trying the link itself.

Frames on a heartbeat link (each inside the usual varint length prefix)::

    0x01 | signed node record           the sender's record (first frame, and on change)
    0x02 | u64-LE seq | 16-byte members digest | 16-byte certificates digest | flags
    0x03 | signed node record           another node's record that gossip missed, pushed on

DownReport wire form::

    0x01 | 64-byte Ed25519 signature | canonical JSON {network, reporter, subject, seq, issued_at}
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

from p2pwalrus.core.keys import ED25519_SIGNATURE_SIZE, public_key_from_peer_id, sign, verify_signature
from p2pwalrus.errors import InvalidLivenessMessage

FRAME_RECORD = 0x01
FRAME_BEAT = 0x02
FRAME_RELAY = 0x03
DIGEST_SIZE = 16
BEAT_SIZE = 1 + 8 + 2 * DIGEST_SIZE + 1
BEAT_WATCHING = 0x01  # flags: the sender watches the receiver (wants this link)
MAX_LINK_FRAME = 4097  # a record frame: 1 + MAX_RECORD_SIZE

REPORT_FORMAT = 1
REPORT_SIGNING_DOMAIN = b"p2pwalrus/down-report/v1\n"
MAX_REPORT_SIZE = 512
_REPORT_FIELDS = ("issued_at", "network", "reporter", "seq", "subject")
_MAX_INT = 2**63 - 1


@dataclass(frozen=True)
class Beat:
    """What each end of a heartbeat link sends every interval."""

    seq: int  # the seq of the sender's current node record
    members: bytes  # LiveSet.digest() of the sender
    certs: bytes  # digest of the sender's certificate set
    # The sender watches the receiver. A link stays while either end watches the other:
    # dropped by one end alone, the other would reopen it at once (ring views differ while
    # nodes join), and a link lost that way looked like a death to the end that wanted it.
    watching: bool = True

    def __post_init__(self) -> None:
        if type(self.seq) is not int or not 0 <= self.seq <= _MAX_INT:
            raise InvalidLivenessMessage("beat seq out of range")
        if len(self.members) != DIGEST_SIZE or len(self.certs) != DIGEST_SIZE:
            raise InvalidLivenessMessage("beat digests must be 16 bytes")
        if type(self.watching) is not bool:
            raise InvalidLivenessMessage("beat watching flag must be a bool")

    def to_frame(self) -> bytes:
        flags = BEAT_WATCHING if self.watching else 0
        return bytes([FRAME_BEAT]) + self.seq.to_bytes(8, "little") + self.members + self.certs + bytes([flags])

    @classmethod
    def from_frame(cls, frame: bytes) -> Beat:
        if len(frame) != BEAT_SIZE or frame[0] != FRAME_BEAT:
            raise InvalidLivenessMessage("malformed beat")
        if frame[41] & ~BEAT_WATCHING:
            raise InvalidLivenessMessage("unknown beat flags")
        return cls(int.from_bytes(frame[1:9], "little"), bytes(frame[9:25]), bytes(frame[25:41]),
                   bool(frame[41] & BEAT_WATCHING))


def record_frame(record_bytes: bytes) -> bytes:
    return bytes([FRAME_RECORD]) + record_bytes


def relay_frame(record_bytes: bytes) -> bytes:
    return bytes([FRAME_RELAY]) + record_bytes


@dataclass(frozen=True)
class DownReport:
    """``reporter`` lost its link to ``subject`` (whose newest record it held had ``seq``)
    and could not reopen it. Validated at construction."""

    network: str
    reporter: str
    subject: str
    seq: int
    issued_at: float

    def __post_init__(self) -> None:
        for name in ("reporter", "subject"):
            try:
                public_key_from_peer_id(getattr(self, name))
            except (ValueError, TypeError) as exc:
                raise InvalidLivenessMessage(f"{name}: {exc}") from None
        if self.reporter == self.subject:
            raise InvalidLivenessMessage("a node does not report itself down")
        if not isinstance(self.network, str) or not 0 < len(self.network) <= 32:
            raise InvalidLivenessMessage("bad network name")
        if type(self.seq) is not int or not 0 <= self.seq <= _MAX_INT:
            raise InvalidLivenessMessage("seq out of range")
        if type(self.issued_at) not in (int, float) or not math.isfinite(self.issued_at) or self.issued_at < 0:
            raise InvalidLivenessMessage("issued_at must be a finite non-negative number")

    def body(self) -> bytes:
        obj = {"issued_at": float(self.issued_at), "network": self.network, "reporter": self.reporter,
               "seq": self.seq, "subject": self.subject}
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


@dataclass(frozen=True)
class SignedDownReport:
    report: DownReport
    signature: bytes
    _body: bytes = field(default=b"", repr=False, compare=False)

    def to_bytes(self) -> bytes:
        return bytes([REPORT_FORMAT]) + self.signature + (self._body or self.report.body())

    @classmethod
    def from_bytes(cls, data: bytes, *, network: str, now: float, max_age: float) -> SignedDownReport:
        """Parse and check a report from a peer: size first, then form, network, age, signature."""
        if len(data) > MAX_REPORT_SIZE:
            raise InvalidLivenessMessage("report too large")
        if len(data) < 1 + ED25519_SIGNATURE_SIZE + 2 or data[0] != REPORT_FORMAT:
            raise InvalidLivenessMessage("unknown report format")
        signature = bytes(data[1:1 + ED25519_SIGNATURE_SIZE])
        body = bytes(data[1 + ED25519_SIGNATURE_SIZE:])
        try:
            obj = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise InvalidLivenessMessage("report is not JSON") from None
        if not isinstance(obj, dict) or tuple(sorted(obj)) != _REPORT_FIELDS:
            raise InvalidLivenessMessage("report fields")
        report = DownReport(obj["network"], obj["reporter"], obj["subject"], obj["seq"], obj["issued_at"])
        if report.body() != body:
            raise InvalidLivenessMessage("report is not in canonical form")
        if report.network != network:
            raise InvalidLivenessMessage("report for another network")
        if not now - max_age <= report.issued_at <= now + max_age:
            raise InvalidLivenessMessage("report too old or from the future")
        if not verify_signature(report.reporter, REPORT_SIGNING_DOMAIN + body, signature):
            raise InvalidLivenessMessage("bad signature")
        return cls(report, signature, body)


def sign_down_report(signer: object, report: DownReport) -> SignedDownReport:
    body = report.body()
    return SignedDownReport(report, sign(signer, REPORT_SIGNING_DOMAIN + body), body)  # type: ignore[arg-type]


def _ring_key(peer_id: str) -> bytes:
    return hashlib.blake2b(peer_id.encode(), digest_size=8).digest()


def watch_targets(me: str, members: list[str], *, watch_all_up_to: int, neighbours: int) -> set[str]:
    """The peers ``me`` keeps a heartbeat link with: every member in a small network; in a
    larger one its ``neighbours`` nearest on a hash ring (half on each side), so every node
    is watched by about as many peers as it watches, and the links grow with N, not N^2."""
    others = sorted(set(members) - {me})
    if len(others) <= watch_all_up_to:
        return set(others)
    ring = sorted([*others, me], key=_ring_key)
    i = ring.index(me)
    half = max(1, neighbours // 2)
    return {ring[(i + d) % len(ring)] for d in range(-half, half + 1) if d} - {me}
