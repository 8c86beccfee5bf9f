"""Manifests: blobs that describe other blobs (a file too large for one blob, and more).

Pure: no I/O, no network. The client (client/chunked.py) stores and reads files through it;
the site publisher builds its site manifest on the same envelope with its own kind.

A blob is a manifest when its bytes begin with MAGIC and parse as one: readers (`read`,
`blob-status`, the gateway) then serve the content it describes instead of its own bytes.
A file that happens to begin with MAGIC is therefore never stored bare: the writer wraps it
in a one-chunk file manifest (`needs_manifest`), so that what any file reads back as is
exactly what was stored.

Envelope (every manifest)::

    offset  size  field
    0       12    MAGIC = 89 'P2PWMF' 0d 0a 1a 0a 00 00   (PNG-style: a high first byte and
                  line-ending and EOF bytes, so neither text nor a mangled copy looks like one)
    12      1     kind     (KIND_FILE = 1; 2 is reserved for the site manifest)
    13      1     version  (of that kind's body; a reader refuses versions it does not know)
    14      ...   body

File manifest body (kind 1, version 1), integers little-endian::

    8       total_size      bytes of the whole file
    32      content_hash    Blake2b-256 of the whole file (`content_hash()`)
    4       n_chunks        at least 1; the file is the chunks' contents in order
    n x 40  chunks          each: 32-byte blob ID, 8-byte size (> 0 unless the file is empty)

The body ends exactly there (trailing bytes make it invalid). Chunk sizes sum to
total_size. Each chunk is an ordinary blob, read and verified by its blob ID as any blob
is; the content hash then checks the whole. All chunks but the last have the same size in
what this project writes (`plan_chunks`), but readers rely only on the sizes listed.
"""

from __future__ import annotations

import bisect
import hashlib
import struct
from dataclasses import dataclass
from functools import cached_property

from ..errors import ManifestError
from .rs2_metadata import max_blob_size

MAGIC = b"\x89P2PWMF\r\n\x1a\n\x00\x00"
_HEADER = struct.Struct("<BB")  # kind, version
HEADER_LEN = len(MAGIC) + _HEADER.size

KIND_FILE = 1
KIND_SITE = 2  # reserved for the site manifest (site publishing)
FILE_VERSION = 1

_FILE_FIXED = struct.Struct("<Q32sI")  # total_size, content_hash, n_chunks
_CHUNK = struct.Struct("<32sQ")  # blob ID, size
CHUNK_ENTRY_LEN = _CHUNK.size
BLOB_ID_LEN = 32


def pack(kind: int, version: int, body: bytes) -> bytes:
    """A manifest blob's bytes: MAGIC, kind, version, body."""
    if not (0 < kind < 256 and 0 < version < 256):
        raise ManifestError(f"manifest kind and version must be 1..255, got {kind}, {version}")
    return MAGIC + _HEADER.pack(kind, version) + body


def is_manifest(data) -> bool:
    """Whether `data` (a blob, or its first HEADER_LEN bytes) begins like a manifest."""
    return bytes(memoryview(data)[:len(MAGIC)]) == MAGIC and len(data) >= HEADER_LEN


def unpack(data) -> tuple[int, int, memoryview]:
    """(kind, version, body) of a manifest; ManifestError if it does not begin like one."""
    if not is_manifest(data):
        raise ManifestError("not a manifest (no manifest magic)")
    view = memoryview(data)
    kind, version = _HEADER.unpack_from(view, len(MAGIC))
    return kind, version, view[HEADER_LEN:]


def needs_manifest(size: int, head, n_shards: int) -> bool:
    """Whether a file of `size` bytes beginning with `head` (its first HEADER_LEN bytes or
    more) must be stored as chunks and a manifest rather than as one bare blob: it is larger
    than one blob, or it would read back as a manifest."""
    return size > max_blob_size(n_shards) or is_manifest(head)


def default_chunk_size(n_shards: int) -> int:
    """The largest blob for this shard count: the fewest chunks, each a full RS2 matrix."""
    return max_blob_size(n_shards)


def check_chunk_size(chunk_size: int, n_shards: int) -> int:
    largest = max_blob_size(n_shards)
    if not 1 <= chunk_size <= largest:
        raise ManifestError(f"chunk size must be between 1 and {largest} bytes (the largest blob "
                            f"for {n_shards} shards), got {chunk_size}")
    return chunk_size


def plan_chunks(total_size: int, chunk_size: int) -> list[int]:
    """The chunk sizes of a file: full chunks, then the rest (one empty chunk for an empty file)."""
    if chunk_size < 1:
        raise ManifestError("chunk size must be positive")
    full, rest = divmod(total_size, chunk_size)
    return [chunk_size] * full + ([rest] if rest or not full else [])


def file_manifest_length(n_chunks: int) -> int:
    """The size of the manifest of a file of ``n_chunks`` chunks."""
    return HEADER_LEN + _FILE_FIXED.size + n_chunks * CHUNK_ENTRY_LEN


def max_chunks(n_shards: int) -> int:
    """How many chunks a file manifest stored as one blob can list at this shard count."""
    room = max_blob_size(n_shards) - HEADER_LEN - _FILE_FIXED.size
    return room // CHUNK_ENTRY_LEN


def content_hash(data=b"") -> "hashlib._Hash":
    """The running hash of a file's content (feed it with .update(), finish with .digest())."""
    return hashlib.blake2b(data, digest_size=32)


@dataclass(frozen=True)
class ChunkRef:
    blob_id: bytes
    size: int

    def __post_init__(self) -> None:
        if not isinstance(self.blob_id, bytes) or len(self.blob_id) != BLOB_ID_LEN:
            raise ManifestError("a chunk's blob ID must be 32 bytes")
        if not isinstance(self.size, int) or self.size < 0:
            raise ManifestError("a chunk's size must be a non-negative integer")


@dataclass(frozen=True)
class FileManifest:
    """A file stored as chunks: their blob IDs and sizes, in order, and the whole file's hash."""

    total_size: int
    content_hash: bytes
    chunks: tuple[ChunkRef, ...]

    def __post_init__(self) -> None:
        if len(self.content_hash) != 32:
            raise ManifestError("the content hash must be 32 bytes")
        if not self.chunks:
            raise ManifestError("a file manifest lists at least one chunk")
        if sum(c.size for c in self.chunks) != self.total_size:
            raise ManifestError(f"chunk sizes sum to {sum(c.size for c in self.chunks)}, "
                                f"not the file's {self.total_size} bytes")
        if self.total_size and any(c.size == 0 for c in self.chunks):
            raise ManifestError("a non-empty file has no empty chunks")

    def to_bytes(self) -> bytes:
        body = [_FILE_FIXED.pack(self.total_size, self.content_hash, len(self.chunks))]
        body += [_CHUNK.pack(c.blob_id, c.size) for c in self.chunks]
        return pack(KIND_FILE, FILE_VERSION, b"".join(body))

    @classmethod
    def from_bytes(cls, data) -> "FileManifest":
        kind, version, body = unpack(data)
        if kind != KIND_FILE:
            raise ManifestError(f"manifest of kind {kind}, not a file manifest ({KIND_FILE})")
        if version != FILE_VERSION:
            raise ManifestError(f"file manifest version {version} is not known here (this reader knows "
                                f"{FILE_VERSION}): upgrade p2pwalrus")
        if len(body) < _FILE_FIXED.size:
            raise ManifestError("file manifest truncated")
        total, digest, count = _FILE_FIXED.unpack_from(body)
        if len(body) != _FILE_FIXED.size + count * CHUNK_ENTRY_LEN:
            raise ManifestError(f"file manifest of {len(body)} body bytes does not hold exactly {count} chunks")
        chunks = tuple(ChunkRef(*_CHUNK.unpack_from(body, _FILE_FIXED.size + i * CHUNK_ENTRY_LEN))
                       for i in range(count))
        return cls(total, digest, chunks)

    @cached_property
    def offsets(self) -> tuple[int, ...]:
        """Where each chunk starts in the file (one more entry: the file's size)."""
        out, at = [], 0
        for c in self.chunks:
            out.append(at)
            at += c.size
        out.append(at)
        return tuple(out)

    def chunks_for_range(self, start: int, end: int) -> list[tuple[int, int, int]]:
        """The chunks that bytes [start, end] (inclusive) of the file lie in, as
        (chunk index, first byte in that chunk, last byte in that chunk + 1); only those."""
        if not 0 <= start <= end < self.total_size:
            raise ManifestError(f"range {start}-{end} is outside a file of {self.total_size} bytes")
        offs = self.offsets
        first = bisect.bisect_right(offs, start) - 1
        out = []
        i = first
        while i < len(self.chunks) and offs[i] <= end:
            lo = max(start, offs[i]) - offs[i]
            hi = min(end + 1, offs[i + 1]) - offs[i]
            if hi > lo:
                out.append((i, lo, hi))
            i += 1
        return out
