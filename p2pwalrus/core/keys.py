"""Ed25519 signatures checked from a libp2p peer ID alone (pure: pynacl, no libp2p).

An Ed25519 libp2p peer ID is the identity multihash of the protobuf-encoded
public key, so its bytes are always::

    0x00 0x24 | 0x08 0x01 | 0x12 0x20 | <32-byte Ed25519 public key>
    identity   KeyType=1   Data, 32 B
    len 36     (Ed25519)

and its text form is base58btc of those 38 bytes ("12D3KooW..."). Only this
canonical encoding is accepted, so one key has exactly one peer ID.
"""

from __future__ import annotations

from typing import Protocol

from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import VerifyKey

ED25519_SIGNATURE_SIZE = 64
ED25519_PUBLIC_KEY_SIZE = 32
# identity multihash (code 0x00, length 36) + protobuf PublicKey{Type: Ed25519, Data: 32 bytes}
_ED25519_PEER_ID_PREFIX = b"\x00\x24\x08\x01\x12\x20"
_PEER_ID_BYTES_SIZE = len(_ED25519_PEER_ID_PREFIX) + ED25519_PUBLIC_KEY_SIZE
_PEER_ID_MAX_TEXT = 64  # base58 of 38 bytes is 52 characters; bound before decoding

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}


class _PrivateKeyLike(Protocol):
    def sign(self, data: bytes) -> bytes: ...


class _KeyPairLike(Protocol):
    private_key: _PrivateKeyLike


def b58decode(text: str) -> bytes:
    """Decode base58btc (Bitcoin alphabet); raises ValueError on a bad character."""
    n = 0
    for ch in text:
        try:
            n = n * 58 + _B58_INDEX[ch]
        except KeyError:
            raise ValueError(f"invalid base58 character {ch!r}") from None
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    zeros = len(text) - len(text.lstrip("1"))
    return b"\x00" * zeros + body


def b58encode(data: bytes) -> str:
    """Encode bytes as base58btc."""
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58_ALPHABET[r])
    zeros = len(data) - len(data.lstrip(b"\x00"))
    return "1" * zeros + "".join(reversed(out))


def public_key_from_peer_id(peer_id: str) -> bytes:
    """Return the 32-byte Ed25519 public key embedded in a peer ID string.

    Raises ValueError if the peer ID is not the canonical identity-multihash
    form of an Ed25519 key (RSA/secp256k1 IDs, hashed IDs, junk).
    """
    if not isinstance(peer_id, str) or not 0 < len(peer_id) <= _PEER_ID_MAX_TEXT:
        raise ValueError("peer ID must be a non-empty string of at most 64 characters")
    raw = b58decode(peer_id)
    if len(raw) != _PEER_ID_BYTES_SIZE or not raw.startswith(_ED25519_PEER_ID_PREFIX):
        raise ValueError("peer ID is not an inline Ed25519 public key")
    return raw[len(_ED25519_PEER_ID_PREFIX) :]


def peer_id_from_public_key(public_key: bytes) -> str:
    """Return the peer ID string of a raw 32-byte Ed25519 public key."""
    if len(public_key) != ED25519_PUBLIC_KEY_SIZE:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return b58encode(_ED25519_PEER_ID_PREFIX + bytes(public_key))


def sign(signer: _KeyPairLike | _PrivateKeyLike, message: bytes) -> bytes:
    """Sign ``message`` with a libp2p KeyPair (or its private key): 64-byte Ed25519 signature.

    Callers should prefix a domain tag of their own so a signature made for one
    purpose cannot be replayed as another.
    """
    key = getattr(signer, "private_key", signer)
    signature = key.sign(bytes(message))
    if len(signature) != ED25519_SIGNATURE_SIZE:
        raise ValueError("signer did not produce a 64-byte Ed25519 signature (is the key Ed25519?)")
    return signature


def verify_signature(peer_id: str, message: bytes, signature: bytes) -> bool:
    """True iff ``signature`` is a valid Ed25519 signature of ``message`` by ``peer_id``'s key.

    Uses only pynacl and the public key embedded in the peer ID. Never raises
    for bad input: a malformed peer ID or signature is simply not valid.
    """
    if not isinstance(signature, (bytes, bytearray)) or len(signature) != ED25519_SIGNATURE_SIZE:
        return False
    try:
        public_key = public_key_from_peer_id(peer_id)
        VerifyKey(public_key).verify(bytes(message), bytes(signature))
    except (ValueError, BadSignatureError, CryptoError, TypeError):
        return False
    return True
