"""Storage confirmations and availability certificates (pure).

A holder signs a confirmation over (network, blob ID, epoch, end epoch, shards stored)
with its libp2p Ed25519 key. A certificate gathers confirmations whose shards, each owned
by its signer in the shard map of the member set the writer used, cover at least n - f
distinct shards. Anyone checks it from peer IDs alone.

Without a chain, the member set is the writer's word: a validator also requires that
most confirming peers be known to it (see `validate_certificate`'s `known_peers`).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from ..errors import ProtocolError
from .keys import sign, verify_signature
from .placement import PlacementError, compute_shard_map

_CONFIRM_TAG = b"p2pwalrus/storage-confirmation/v1\x00"
_DELETE_TAG = b"p2pwalrus/delete/v1\x00"
MAX_CERT_BYTES = 1 << 20
MAX_SHARDS = 1 << 16  # shard indices and counts a peer may name (Walrus mainnet: 1000)


def _u64(value, name: str) -> int:
    """An integer field of a peer's JSON: an int (not a bool, not 1e400) in 0..2^64-1."""
    if type(value) is not int or not 0 <= value < 1 << 64:
        raise ValueError(f"{name} must be an integer in 0..2^64-1")
    return value


class InvalidCertificateError(ProtocolError):
    def __init__(self, reason: str):
        super().__init__(f"invalid certificate: {reason}")
        self.reason = reason


def confirmation_message(network: str, blob_id: bytes, epoch: int, end_epoch: int, shards) -> bytes:
    shards = sorted(shards)
    return (
        _CONFIRM_TAG
        + network.encode()
        + b"\x00"
        + blob_id
        + struct.pack("<QQI", epoch, end_epoch, len(shards))
        + b"".join(struct.pack("<I", s) for s in shards)
    )


@dataclass(frozen=True)
class StorageConfirmation:
    peer_id: str
    shards: tuple[int, ...]
    signature: bytes

    def to_json(self) -> dict:
        return {"peer_id": self.peer_id, "shards": list(self.shards), "signature": self.signature.hex()}

    @classmethod
    def from_json(cls, obj) -> "StorageConfirmation":
        """A confirmation from a peer's JSON: typed fields, or InvalidCertificateError."""
        if not isinstance(obj, dict):
            raise InvalidCertificateError("malformed confirmation (not an object)")
        try:
            shards = obj["shards"]
            if not isinstance(shards, list) or len(shards) > MAX_SHARDS or not all(
                    type(s) is int and 0 <= s < MAX_SHARDS for s in shards):
                raise ValueError("shards")
            peer_id, signature = obj["peer_id"], obj["signature"]
            if not isinstance(peer_id, str) or not isinstance(signature, str) or len(signature) > 256:
                raise ValueError("peer_id and signature must be strings")
            return cls(peer_id, tuple(shards), bytes.fromhex(signature))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidCertificateError(f"malformed confirmation ({exc})") from None


def sign_confirmation(keypair, peer_id: str, network: str, blob_id: bytes, epoch: int, end_epoch: int, shards) -> StorageConfirmation:
    shards = tuple(sorted(shards))
    return StorageConfirmation(peer_id, shards, sign(keypair, confirmation_message(network, blob_id, epoch, end_epoch, shards)))


def verify_confirmation(conf: StorageConfirmation, network: str, blob_id: bytes, epoch: int, end_epoch: int) -> bool:
    return verify_signature(conf.peer_id, confirmation_message(network, blob_id, epoch, end_epoch, conf.shards), conf.signature)


def quorum(n_shards: int) -> int:
    """Shards a certificate must cover: n - f."""
    return n_shards - (n_shards - 1) // 3


@dataclass(frozen=True)
class AvailabilityCertificate:
    network: str
    blob_id: bytes
    n_shards: int
    epoch: int  # certified epoch
    end_epoch: int  # exclusive
    members: tuple[str, ...]  # the live set whose shard map the writer used
    confirmations: tuple[StorageConfirmation, ...]
    deletable: bool = False
    owner: str = ""  # peer ID of the writer's key (for delete)

    def to_bytes(self) -> bytes:
        obj = {
            "network": self.network,
            "blob_id": self.blob_id.hex(),
            "n_shards": self.n_shards,
            "epoch": self.epoch,
            "end_epoch": self.end_epoch,
            "members": list(self.members),
            "confirmations": [c.to_json() for c in self.confirmations],
            "deletable": self.deletable,
            "owner": self.owner,
        }
        return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "AvailabilityCertificate":
        if len(data) > MAX_CERT_BYTES:
            raise InvalidCertificateError(f"{len(data)} bytes is over the {MAX_CERT_BYTES}-byte limit")
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise InvalidCertificateError(f"malformed ({type(exc).__name__})") from None
        if not isinstance(obj, dict):
            raise InvalidCertificateError("malformed (not an object)")
        try:
            members = obj["members"]
            if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
                raise ValueError("members")
            confirmations = obj["confirmations"]
            if not isinstance(confirmations, list):
                raise ValueError("confirmations")
            deletable, owner = obj.get("deletable", False), obj.get("owner", "")
            if not isinstance(deletable, bool) or not isinstance(owner, str) or not isinstance(obj["network"], str):
                raise ValueError("network, deletable or owner")
            cert = cls(
                network=obj["network"],
                blob_id=bytes.fromhex(obj["blob_id"]),
                n_shards=_u64(obj["n_shards"], "n_shards"),
                epoch=_u64(obj["epoch"], "epoch"),
                end_epoch=_u64(obj["end_epoch"], "end_epoch"),
                members=tuple(members),
                confirmations=tuple(StorageConfirmation.from_json(c) for c in confirmations),
                deletable=deletable,
                owner=owner,
            )
        except InvalidCertificateError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidCertificateError(f"malformed ({exc})") from None
        if len(cert.blob_id) != 32:
            raise InvalidCertificateError("blob ID must be 32 bytes")
        return cert

    @property
    def shards_confirmed(self) -> set[int]:
        return {s for c in self.confirmations for s in c.shards}


def validate_certificate(
    cert: AvailabilityCertificate,
    *,
    network: str,
    n_shards: int,
    known_peers=None,
    max_members: int = 10_000,
) -> None:
    """Raise InvalidCertificateError unless the certificate is sound.

    Checks: network and shard count, every signature, each confirmed shard owned by its
    signer in the shard map of `members`, shards distinct, quorum n - f. If `known_peers`
    is given, at least half of the confirming peers must be in it, so that a writer
    cannot certify a blob with a member set of keys it made up.
    """
    if cert.network != network:
        raise InvalidCertificateError(f"for network {cert.network!r}, not {network!r}")
    if cert.n_shards != n_shards:
        raise InvalidCertificateError(f"for {cert.n_shards} shards, the network has {n_shards}")
    if cert.end_epoch <= cert.epoch:
        raise InvalidCertificateError("end epoch must be after the certified epoch")
    if not cert.members or len(cert.members) > max_members or len(set(cert.members)) != len(cert.members):
        raise InvalidCertificateError("member set is empty, too large or has duplicates")
    try:
        shard_map = compute_shard_map(cert.members, n_shards)
    except (PlacementError, ValueError, TypeError) as exc:  # an empty member ID, say
        raise InvalidCertificateError(f"member set: {exc}") from None
    seen: set[int] = set()
    signers: set[str] = set()
    for conf in cert.confirmations:
        if conf.peer_id in signers:
            raise InvalidCertificateError(f"two confirmations from {conf.peer_id}")
        signers.add(conf.peer_id)
        if conf.peer_id not in cert.members:
            raise InvalidCertificateError(f"confirmation from {conf.peer_id}, not a member")
        owned = set(shard_map.shards_of(conf.peer_id))
        for s in conf.shards:
            if s in seen:
                raise InvalidCertificateError(f"shard {s} confirmed twice")
            if s not in owned:
                raise InvalidCertificateError(f"{conf.peer_id} confirmed shard {s}, which it does not hold")
            seen.add(s)
        if not verify_confirmation(conf, network, cert.blob_id, cert.epoch, cert.end_epoch):
            raise InvalidCertificateError(f"bad signature from {conf.peer_id}")
    if len(seen) < quorum(n_shards):
        raise InvalidCertificateError(f"covers {len(seen)} shards, needs {quorum(n_shards)}")
    if known_peers is not None:
        known = sum(1 for p in signers if p in known_peers)
        if 2 * known < len(signers):
            raise InvalidCertificateError(f"only {known} of {len(signers)} confirming peers are known here")


def delete_message(network: str, blob_id: bytes) -> bytes:
    """What the owner of a deletable blob signs to delete it."""
    return _DELETE_TAG + network.encode() + b"\x00" + blob_id
