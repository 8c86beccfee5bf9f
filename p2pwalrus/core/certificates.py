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
from .placement import compute_shard_map

_CONFIRM_TAG = b"p2pwalrus/storage-confirmation/v1\x00"
_DELETE_TAG = b"p2pwalrus/delete/v1\x00"
MAX_CERT_BYTES = 1 << 20


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
        try:
            shards = obj["shards"]
            if not isinstance(shards, list) or not all(isinstance(s, int) and s >= 0 for s in shards):
                raise ValueError("shards")
            return cls(str(obj["peer_id"]), tuple(shards), bytes.fromhex(obj["signature"]))
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
            members = obj["members"]
            if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
                raise ValueError("members")
            cert = cls(
                network=str(obj["network"]),
                blob_id=bytes.fromhex(obj["blob_id"]),
                n_shards=int(obj["n_shards"]),
                epoch=int(obj["epoch"]),
                end_epoch=int(obj["end_epoch"]),
                members=tuple(members),
                confirmations=tuple(StorageConfirmation.from_json(c) for c in obj["confirmations"]),
                deletable=bool(obj.get("deletable", False)),
                owner=str(obj.get("owner", "")),
            )
        except InvalidCertificateError:
            raise
        except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
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
    shard_map = compute_shard_map(cert.members, n_shards)
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
