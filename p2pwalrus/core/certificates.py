"""Storage confirmations and availability certificates (pure).

A holder signs a confirmation over (network, blob ID, epoch, end epoch, deletable flag,
owner if deletable, shards stored) with its libp2p Ed25519 key: the labels a delete
depends on are bound by the holders, not only by the certificate's writer.

A certificate is checked against the *validator's own* view of the network (its shard map,
see `validate_certificate`): a confirmed shard counts only if the validator's map assigns
it to the signer, and the counted shards must reach n - f. The member set a certificate
carries is the writer's word and is not used (it stays on the wire for compatibility).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from ..errors import InvalidCertificateError
from .keys import sign, verify_signature
from .placement import ShardMap
from .thresholds import one_honest, quorum  # noqa: F401  (one_honest: callers import it from here too)

# v2: confirmations bind the deletable flag and the owner; deletes carry an epoch and a nonce.
_CONFIRM_TAG = b"p2pwalrus/storage-confirmation/v2\x00"
_DELETE_TAG = b"p2pwalrus/delete/v2\x00"
DELETE_NONCE_BYTES = 16
MAX_CERT_BYTES = 1 << 20
MAX_SHARDS = 1 << 16  # shard indices and counts a peer may name (Walrus mainnet: 1000)


def _u64(value, name: str) -> int:
    """An integer field of a peer's JSON: an int (not a bool, not 1e400) in 0..2^64-1."""
    if type(value) is not int or not 0 <= value < 1 << 64:
        raise ValueError(f"{name} must be an integer in 0..2^64-1")
    return value


def _is_peer_id_text(text: str, *, empty_ok: bool = False) -> bool:
    return (empty_ok and text == "") or (0 < len(text) <= 128 and text.isascii() and text.isalnum())


def bound_owner(deletable: bool, owner: str) -> str:
    """The owner as signed: only a deletable blob's owner means anything (it alone may
    delete), so a permanent blob's confirmations do not depend on who stored it."""
    return owner if deletable else ""


def confirmation_message(network: str, blob_id: bytes, epoch: int, end_epoch: int, shards, *,
                         deletable: bool = False, owner: str = "") -> bytes:
    shards = sorted(shards)
    owner_raw = bound_owner(deletable, owner).encode()
    return (
        _CONFIRM_TAG
        + network.encode()
        + b"\x00"
        + blob_id
        + struct.pack("<QQBH", epoch, end_epoch, 1 if deletable else 0, len(owner_raw))
        + owner_raw
        + struct.pack("<I", len(shards))
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
            if not _is_peer_id_text(peer_id):
                raise ValueError("peer_id must be base58 text")
            return cls(peer_id, tuple(shards), bytes.fromhex(signature))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidCertificateError(f"malformed confirmation ({exc})") from None


def sign_confirmation(keypair, peer_id: str, network: str, blob_id: bytes, epoch: int, end_epoch: int, shards, *,
                      deletable: bool = False, owner: str = "") -> StorageConfirmation:
    shards = tuple(sorted(shards))
    message = confirmation_message(network, blob_id, epoch, end_epoch, shards, deletable=deletable, owner=owner)
    return StorageConfirmation(peer_id, shards, sign(keypair, message))


def verify_confirmation(conf: StorageConfirmation, network: str, blob_id: bytes, epoch: int, end_epoch: int, *,
                        deletable: bool = False, owner: str = "") -> bool:
    message = confirmation_message(network, blob_id, epoch, end_epoch, conf.shards, deletable=deletable, owner=owner)
    return verify_signature(conf.peer_id, message, conf.signature)


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
            # Peer IDs are base58 and network names plain ASCII: anything else (a lone surrogate
            # cannot even be encoded into the signed message) is refused here.
            if not (_is_peer_id_text(owner, empty_ok=True) and all(_is_peer_id_text(m) for m in members)
                    and obj["network"].isascii() and obj["network"].isprintable() and len(obj["network"]) <= 64):
                raise ValueError("network, owner or members not plain ASCII of bounded length")
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


def covered_in_view(cert: AvailabilityCertificate, view: ShardMap) -> set[int]:
    """Shards of the certificate that `view` assigns to the peer that confirmed them."""
    owners = view.owners
    return {s for c in cert.confirmations for s in c.shards if s < len(owners) and owners[s] == c.peer_id}


def validate_certificate(
    cert: AvailabilityCertificate,
    *,
    network: str,
    n_shards: int,
    views,
    current_epoch: int | None = None,
    max_epochs_ahead: int | None = None,
    max_members: int = 10_000,
    need: int | None = None,
) -> None:
    """Raise InvalidCertificateError unless the certificate is sound in the validator's view.

    `views`: the validator's own shard maps, its current one first, then any it held
    shortly before (a node that just joined or left moves about n/N shards between them).
    A confirmed shard counts only where a view assigns it to its signer; the certificate
    must cover n - f shards in one view, each view taken alone, so identities holding at
    most f shards in every view can never reach it, whatever they sign or write as members.
    Tolerance: a writer whose confirmations cover c >= n - f shards is accepted by a
    validator whose map differs from the writer's on at most c - (n - f) of those shards
    (stores wait a grace for stragglers and usually cover all n, so up to f).

    Cheap checks come first (fields, epochs, counts, duplicates, coverage from the map),
    then the signatures, only of the confirmations that count. `need` (default n - f)
    lowers the bar for one use only: f + 1 shows that some honest holder signed.
    """
    if cert.network != network:
        raise InvalidCertificateError(f"for network {cert.network!r}, not {network!r}")
    if cert.n_shards != n_shards:
        raise InvalidCertificateError(f"for {cert.n_shards} shards, the network has {n_shards}")
    if cert.end_epoch <= cert.epoch:
        raise InvalidCertificateError("end epoch must be after the certified epoch")
    if current_epoch is not None:
        if cert.epoch > current_epoch + 1:
            raise InvalidCertificateError(f"certified epoch {cert.epoch} is in the future (now {current_epoch})")
        if max_epochs_ahead is not None and cert.end_epoch > current_epoch + max_epochs_ahead + 1:
            raise InvalidCertificateError(
                f"end epoch {cert.end_epoch} is more than {max_epochs_ahead} epochs ahead of {current_epoch}")
    if len(cert.members) > max_members:
        raise InvalidCertificateError("member set too large")
    if len(cert.confirmations) > n_shards:
        raise InvalidCertificateError(f"{len(cert.confirmations)} confirmations for {n_shards} shards")
    seen: set[int] = set()
    signers: set[str] = set()
    for conf in cert.confirmations:
        if conf.peer_id in signers:
            raise InvalidCertificateError(f"two confirmations from {conf.peer_id}")
        signers.add(conf.peer_id)
        if not conf.shards:
            raise InvalidCertificateError(f"confirmation from {conf.peer_id} covers no shard")
        for s in conf.shards:
            if s in seen:
                raise InvalidCertificateError(f"shard {s} confirmed twice")
            if s >= n_shards:
                raise InvalidCertificateError(f"shard {s} out of range")
            seen.add(s)
    need = quorum(n_shards) if need is None else need  # (a lower one: see node/recertify.py)
    best: set[int] = set()
    chosen = None
    for view in views:
        if view is None or view.n_shards != n_shards:
            continue
        covered = covered_in_view(cert, view)
        if len(covered) > len(best):
            best, chosen = covered, view
        if len(best) >= need:
            break
    if chosen is None or len(best) < need:
        raise InvalidCertificateError(
            f"covers {len(best)} shards held by their signers in this node's view, needs {need}")
    owners = chosen.owners
    for conf in cert.confirmations:
        if not any(owners[s] == conf.peer_id for s in conf.shards):
            continue  # counts for nothing here: its signature is not worth checking
        if not verify_confirmation(conf, network, cert.blob_id, cert.epoch, cert.end_epoch,
                                   deletable=cert.deletable, owner=cert.owner):
            raise InvalidCertificateError(f"bad signature from {conf.peer_id}")


def relabel_reason(held: AvailabilityCertificate, new: AvailabilityCertificate) -> str | None:
    """Why `new` may not replace `held` (None if it may): a later certificate keeps the
    deletable flag and, for a deletable blob, the owner, so nobody but the owner of a
    deletable blob can ever delete it."""
    if new.deletable != held.deletable:
        return "it would change whether the blob is deletable"
    if held.deletable and new.owner != held.owner:
        return "it would change the owner of a deletable blob"
    return None


def delete_message(network: str, blob_id: bytes, epoch: int, nonce: bytes) -> bytes:
    """What the owner of a deletable blob signs to delete it: the epoch it was issued in
    (nodes take it during that epoch and the next only) and a random nonce (each node takes
    a nonce once), so a captured delete cannot be replayed later, e.g. on a re-stored blob."""
    return _DELETE_TAG + network.encode() + b"\x00" + blob_id + struct.pack("<Q", epoch) + nonce
