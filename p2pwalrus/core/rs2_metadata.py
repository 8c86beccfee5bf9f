"""RS2's parameters for a shard count (``EncodingConfig``) and what a blob commits to
(``BlobMetadata``: its length and every sliver's Merkle root, hence its blob ID), with the
rotation of sliver pairs over shards. Importable from ``rs2`` as before."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import (
    BlobTooLargeError, EncodingError, ProtocolError, VerificationError
)
from .thresholds import max_faulty

# The codec and the hashes load when first used: the CLI's start-up (file sizes, manifests)
# needs only the parameters, not numpy.
DIGEST_LEN = 32  # Blake2b-256 (merkle.DIGEST_LEN)

RS2 = 1  # Walrus's encoding type byte for RS2
MAX_SYMBOL_SIZE = 65534
MIN_SHARDS, MAX_SHARDS = 4, 65535
PRIMARY, SECONDARY = "primary", "secondary"


def max_blob_size(n_shards: int) -> int:
    """The largest blob for `n_shards` (R x C symbols of MAX_SYMBOL_SIZE), without making an
    EncodingConfig, which checks the codec: light enough for the CLI's start-up."""
    f = max_faulty(n_shards)
    return (n_shards - 2 * f) * (n_shards - f) * MAX_SYMBOL_SIZE


@dataclass(frozen=True)
class EncodingConfig:
    """The RS2 parameters for a shard count."""

    n_shards: int

    def __post_init__(self) -> None:
        n = self.n_shards
        if not isinstance(n, int) or not MIN_SHARDS <= n <= MAX_SHARDS:
            raise EncodingError(f"shard count must be between {MIN_SHARDS} and {MAX_SHARDS}, got {n!r}")
        from . import codec

        codec.check_supported(self.n_secondary, self.f)
        codec.check_supported(self.n_primary, 2 * self.f)

    @property
    def f(self) -> int:
        return max_faulty(self.n_shards)

    @property
    def n_primary(self) -> int:
        """R: source symbols per column, i.e. the number of primary slivers needed to decode."""
        return self.n_shards - 2 * self.f

    @property
    def n_secondary(self) -> int:
        """C: source symbols per row, i.e. the number of secondary slivers needed to decode."""
        return self.n_shards - self.f

    @property
    def max_blob_size(self) -> int:
        return max_blob_size(self.n_shards)

    def symbol_size(self, length: int) -> int:
        if length < 0:
            raise EncodingError("blob length cannot be negative")
        if length > self.max_blob_size:
            raise BlobTooLargeError(
                f"a blob of {length} bytes is too large for {self.n_shards} shards: "
                f"the largest is {self.max_blob_size} bytes "
                f"({self.n_primary} x {self.n_secondary} symbols of {MAX_SYMBOL_SIZE} bytes)"
            )
        s = -(-max(length, 1) // (self.n_primary * self.n_secondary))
        return s + (s & 1)

    def primary_sliver_len(self, length: int) -> int:
        return self.n_secondary * self.symbol_size(length)

    def secondary_sliver_len(self, length: int) -> int:
        return self.n_primary * self.symbol_size(length)

    def encoded_length(self, length: int) -> int:
        """Bytes stored over all shards for a blob of ``length``: every shard's sliver pair
        plus its copy of the metadata (two 32-byte hashes per shard), as Walrus bills it."""
        return self.n_shards * ((self.n_primary + self.n_secondary) * self.symbol_size(length)
                                + 64 * self.n_shards)


# ---------------------------------------------------------------------------------------
# Metadata and blob ID

_META_HEADER = struct.Struct("<BBIQ")  # format version, encoding type, n_shards, length
_META_VERSION = 1


def metadata_size(n_shards: int) -> int:
    """Bytes of a blob's serialized metadata at ``n_shards``: the bound a reader puts on it."""
    return _META_HEADER.size + 2 * DIGEST_LEN * n_shards


@dataclass(frozen=True)
class BlobMetadata:
    """What a blob commits to: its length and the Merkle roots of every sliver."""

    n_shards: int
    unencoded_length: int
    primary_hashes: tuple[bytes, ...]
    secondary_hashes: tuple[bytes, ...]  # secondary_hashes[i] belongs to pair i (column n-1-i)
    encoding_type: int = RS2

    def __post_init__(self) -> None:
        if self.encoding_type != RS2:
            raise EncodingError(f"unsupported encoding type {self.encoding_type}")
        if len(self.primary_hashes) != self.n_shards or len(self.secondary_hashes) != self.n_shards:
            raise EncodingError("metadata must hold one hash pair per shard")
        if any(len(h) != DIGEST_LEN for h in self.primary_hashes + self.secondary_hashes):
            raise EncodingError("metadata hashes must be 32 bytes")
        self.config.symbol_size(self.unencoded_length)  # validates n and length

    @property
    def config(self) -> EncodingConfig:
        return EncodingConfig(self.n_shards)

    @property
    def symbol_size(self) -> int:
        return self.config.symbol_size(self.unencoded_length)

    def merkle_root(self) -> bytes:
        from .merkle import leaf_hash, merkle_root

        return merkle_root(
            [leaf_hash(p + s) for p, s in zip(self.primary_hashes, self.secondary_hashes)]
        )

    def blob_id(self) -> bytes:
        from .merkle import h256

        return h256(
            bytes([self.encoding_type]) + struct.pack("<Q", self.unencoded_length) + self.merkle_root()
        )

    def to_bytes(self) -> bytes:
        head = _META_HEADER.pack(_META_VERSION, self.encoding_type, self.n_shards, self.unencoded_length)
        body = b"".join(p + s for p, s in zip(self.primary_hashes, self.secondary_hashes))
        return head + body

    @classmethod
    def from_bytes(cls, data: bytes, *, max_shards: int = MAX_SHARDS) -> "BlobMetadata":
        if len(data) < _META_HEADER.size:
            raise ProtocolError("metadata too short")
        version, etype, n, length = _META_HEADER.unpack_from(data)
        if version != _META_VERSION:
            raise ProtocolError(f"unknown metadata format version {version}")
        if not MIN_SHARDS <= n <= max_shards:
            raise ProtocolError(f"metadata names {n} shards")
        if len(data) != metadata_size(n):
            raise ProtocolError("metadata length does not match its shard count")
        body = memoryview(data)[_META_HEADER.size:]
        prim = tuple(bytes(body[i * 64:i * 64 + 32]) for i in range(n))
        sec = tuple(bytes(body[i * 64 + 32:i * 64 + 64]) for i in range(n))
        try:
            return cls(n, length, prim, sec, etype)
        except EncodingError as exc:
            raise ProtocolError(f"invalid metadata: {exc}") from None

    def verify_blob_id(self, blob_id: bytes) -> None:
        if self.blob_id() != blob_id:
            raise VerificationError("metadata does not match the blob ID")

    def secondary_hash_of_column(self, column: int) -> bytes:
        return self.secondary_hashes[self.n_shards - 1 - column]


def shard_for_pair(pair_index: int, blob_id: bytes, n_shards: int) -> int:
    """Pairs are rotated by the blob ID so that systematic slivers land on different shards."""
    return (pair_index + int.from_bytes(blob_id, "big") % n_shards) % n_shards


def pair_for_shard(shard: int, blob_id: bytes, n_shards: int) -> int:
    return (shard - int.from_bytes(blob_id, "big") % n_shards) % n_shards
