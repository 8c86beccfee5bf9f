"""Quilts: many small blobs in one, in Walrus's QuiltV1 layout (walrus-core's quilt encoding).

A quilt is an ordinary blob whose bytes are laid out for reading in columns. Seen as RS2's
source matrix of R rows by C columns of s-byte symbols (R = n - 2f, C = n - f), column j
is the R symbols (r, j) in row order: exactly the secondary sliver of column j. Each patch
(a small blob with its identifier and tags) fills whole consecutive columns, so a reader
fetches only the secondary slivers of its columns, and the index lives in the first
columns (at most MAX_INDEX_COLUMNS), so that it is found the same way.

Byte layout (all integers little-endian; strings, vectors and maps in BCS):

- column 0 begins with the index: version byte 0x01, u32 index size, then the BCS of
  QuiltIndexV1 = vector of (u16 end column, string identifier, map<string, string> tags),
  patches in identifier order (byte-wise), the start of each being the end of the one
  before (the first starts after the index's columns);
- each patch, from the first byte of its first column: the blob header (version 0x01,
  u32 length of what follows it, u8 mask; bit 0 = has tags), u16 size + BCS of the
  identifier, then (if tagged) u16 size + BCS of the tags, then the blob's bytes;
- everything else is zero. The quilt blob is the whole R x C x s matrix, row-major: its
  length is R * C * s, and its blob ID is the ordinary RS2 blob ID of those bytes.

The symbol size is the smallest (rounded up to even) with which every patch fits, each
in whole columns, with the index in at most MAX_INDEX_COLUMNS columns: the same search as
Walrus's, so that the same files at the same shard count give the same quilt blob ID.

A patch ID (Walrus's QuiltPatchId) is the quilt's blob ID followed by the 5-byte internal
ID (version 0x01, u16 start column, u16 end column), printed as URL-safe base64 without
padding.

Pure: no I/O. Everything parsed from bytes is validated here, so that an index, a patch
or a patch ID that exists past this module is a valid one.

The index format (identifiers, patches, patch IDs, the index) is in :mod:`.quilt_index`;
this module is the geometry, encoding and decoding, and every name is importable here.
"""

from __future__ import annotations

import base64  # noqa: F401  (tests reach it as quilt.base64)
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidPatchIdError, QuiltError, QuiltPatchNotFoundError, VerificationError
from .blob_id import blob_id_to_str
from .rs2 import MAX_SYMBOL_SIZE, EncodingConfig
from .varint import encode_uvarint, fold  # noqa: F401  (importable from quilt, as before the split)
from .quilt_index import (  # noqa: F401  (importable from quilt, as before the split)
    QUILT_VERSION_V1, INDEX_PREFIX_SIZE, BLOB_HEADER_SIZE, IDENTIFIER_SIZE_LEN, TAGS_SIZE_LEN,
    MAX_IDENTIFIER_BYTES, MAX_INDEX_COLUMNS, TAGS_FLAG, PATCH_INTERNAL_ID_LEN, PATCH_ID_LEN, SYMBOL_ALIGNMENT,
    _Reader, validate_identifier, QuiltBlob, QuiltPatch, QuiltPatchId, QuiltIndex
)


# --- geometry and symbol size ---------------------------------------------------------------


@dataclass(frozen=True)
class QuiltGeometry:
    """RS2's source matrix for a shard count and symbol size, seen as columns."""

    n_shards: int
    symbol_size: int

    def __post_init__(self) -> None:
        EncodingConfig(self.n_shards)
        if not 0 < self.symbol_size <= MAX_SYMBOL_SIZE or self.symbol_size % SYMBOL_ALIGNMENT:
            raise QuiltError(f"bad quilt symbol size {self.symbol_size}")

    @property
    def n_rows(self) -> int:
        return EncodingConfig(self.n_shards).n_primary

    @property
    def n_columns(self) -> int:
        return EncodingConfig(self.n_shards).n_secondary

    @property
    def column_size(self) -> int:
        return self.n_rows * self.symbol_size

    @property
    def blob_size(self) -> int:
        return self.n_rows * self.n_columns * self.symbol_size

    @classmethod
    def of_blob(cls, n_shards: int, length: int) -> "QuiltGeometry":
        """The geometry of a quilt blob of `length` bytes (a whole matrix, or not a quilt)."""
        cfg = EncodingConfig(n_shards)
        cells = cfg.n_primary * cfg.n_secondary
        if length <= 0 or length % cells or (length // cells) % SYMBOL_ALIGNMENT:
            raise QuiltError(f"a blob of {length} bytes is not a quilt at {n_shards} shards: "
                             f"a quilt is a whole matrix of {cells} symbols of an even size")
        return cls(n_shards, length // cells)


def _fits(sizes: list[int], n_columns: int, column_size: int) -> bool:
    return sum(-(-size // column_size) for size in sizes) <= n_columns


def compute_symbol_size(sizes: list[int], n_columns: int, n_rows: int,
                        max_index_columns: int = MAX_INDEX_COLUMNS) -> int:
    """The smallest even symbol size with which each of `sizes` (the index's first) fits in
    whole columns, the index in at most `max_index_columns` of them; Walrus's search."""
    if not sizes:
        raise QuiltError("a quilt needs at least one blob")
    if len(sizes) > n_columns:
        raise QuiltError(f"too many blobs for one quilt: {len(sizes) - 1}; at most {n_columns - 1} "
                         f"at this shard count (one column each, one for the index)")
    low = max(-(-sum(sizes) // (n_columns * n_rows)),
              -(-sizes[0] // (n_rows * max_index_columns)),
              -(-INDEX_PREFIX_SIZE // n_rows))
    high = -(-max(sizes) // ((n_columns // len(sizes)) * n_rows))
    while low < high:
        mid = (low + high) // 2
        if _fits(sizes, n_columns, mid * n_rows):
            high = mid
        else:
            low = mid + 1
    symbol_size = -(-low // SYMBOL_ALIGNMENT) * SYMBOL_ALIGNMENT
    if symbol_size > MAX_SYMBOL_SIZE:
        raise QuiltError(f"these blobs are too large for one quilt: they need symbols of {symbol_size} bytes, "
                         f"at most {MAX_SYMBOL_SIZE}; put fewer or smaller blobs in it")
    return symbol_size


def max_patches(n_shards: int) -> int:
    """How many blobs one quilt can hold at this shard count (one column each, one for the index)."""
    return EncodingConfig(n_shards).n_secondary - 1


# --- encoding -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncodedQuilt:
    """A quilt's blob bytes (the whole source matrix, row-major) and its index."""

    data: bytes = field(repr=False)
    index: QuiltIndex
    geometry: QuiltGeometry


def encode_quilt(blobs: Iterable[QuiltBlob], n_shards: int) -> EncodedQuilt:
    """The QuiltV1 quilt of these blobs at this shard count (Walrus's construct_quilt)."""
    items = sorted(blobs, key=lambda b: b.identifier.encode("utf-8"))
    for a, b in zip(items, items[1:]):
        if a.identifier == b.identifier:
            raise QuiltError(f"two blobs are named {a.identifier!r}; identifiers must be unique in a quilt")
    cfg = EncodingConfig(n_shards)
    n_rows, n_columns = cfg.n_primary, cfg.n_secondary
    prefixes = [b.prefix() for b in items]
    placeholder = QuiltIndex(tuple(QuiltPatch(b.identifier, i, i + 1, b.tags) for i, b in enumerate(items)))
    index_size = INDEX_PREFIX_SIZE + len(placeholder.to_bytes())  # the same for any end columns (u16 each)
    sizes = [index_size] + [len(p) + len(b.data) for p, b in zip(prefixes, items)]
    s = compute_symbol_size(sizes, n_columns, n_rows)
    geo = QuiltGeometry(n_shards, s)
    column_size = geo.column_size
    index_columns = -(-index_size // column_size)
    if index_columns > MAX_INDEX_COLUMNS:
        raise QuiltError(f"the quilt's index needs {index_columns} columns; at most {MAX_INDEX_COLUMNS}")
    by_column = np.zeros(n_columns * column_size, np.uint8)  # column-major: column j is one run
    patches, column = [], index_columns
    for prefix, blob in zip(prefixes, items):
        at = column * column_size
        by_column[at:at + len(prefix)] = np.frombuffer(prefix, np.uint8)
        at += len(prefix)
        by_column[at:at + len(blob.data)] = np.frombuffer(blob.data, np.uint8)
        used = -(-(len(prefix) + len(blob.data)) // column_size)
        patches.append(QuiltPatch(blob.identifier, column, column + used, blob.tags))
        column += used
    index = QuiltIndex(tuple(patches))
    body = index.to_bytes()
    head = struct.pack("<BI", QUILT_VERSION_V1, len(body)) + body
    assert len(head) == index_size
    by_column[:len(head)] = np.frombuffer(head, np.uint8)
    matrix = by_column.reshape(n_columns, n_rows, s).transpose(1, 0, 2)  # (rows, columns, s)
    return EncodedQuilt(np.ascontiguousarray(matrix).tobytes(), index, geo)


# --- decoding: from any source of columns -----------------------------------------------------

ColumnSource = Callable[[int], bytes]  # column index -> that column's R * s bytes


def columns_of(quilt_blob: bytes, geometry: QuiltGeometry) -> ColumnSource:
    """The columns of a whole quilt blob."""
    if len(quilt_blob) != geometry.blob_size:
        raise QuiltError(f"a quilt of this geometry has {geometry.blob_size} bytes, not {len(quilt_blob)}")
    matrix = np.frombuffer(quilt_blob, np.uint8).reshape(geometry.n_rows, geometry.n_columns, geometry.symbol_size)

    def column(j: int) -> bytes:
        if not 0 <= j < geometry.n_columns:
            raise QuiltError(f"column {j} is outside the quilt")
        return matrix[:, j, :].tobytes()

    return column


def read_columns(source: ColumnSource, geometry: QuiltGeometry, start_column: int, skip: int, length: int,
                 end_column: int | None = None) -> bytes:
    """`length` bytes from `skip` bytes into the run of columns that starts at `start_column`,
    not reading past `end_column` (exclusive; default: the last column)."""
    size = geometry.column_size
    end_column = geometry.n_columns if end_column is None else end_column
    if skip < 0 or length < 0 or start_column * size + skip + length > end_column * size:
        raise QuiltError("a patch's recorded length runs past its columns")
    out, column, skip = [], start_column + skip // size, skip % size
    while length > 0:
        part = source(column)[skip:skip + length]
        if len(part) != min(size - skip, length):
            raise VerificationError(f"column {column} has {len(source(column))} bytes, expected {size}")
        out.append(part)
        length -= len(part)
        column, skip = column + 1, 0
    return b"".join(out)


def index_columns_needed(column0: bytes, geometry: QuiltGeometry) -> int:
    """How many columns the index takes, from the first column (its prefix)."""
    if len(column0) < INDEX_PREFIX_SIZE:
        raise QuiltError("the first column is too short to be a quilt's")
    version, size = struct.unpack_from("<BI", column0)
    if version != QUILT_VERSION_V1:
        raise QuiltError(f"not a quilt: it begins with version byte {version}, not {QUILT_VERSION_V1}")
    columns = -(-(INDEX_PREFIX_SIZE + size) // geometry.column_size)
    if columns > MAX_INDEX_COLUMNS or columns >= geometry.n_columns:
        raise QuiltError(f"not a quilt: its index would take {columns} columns")
    return columns


def decode_index(source: ColumnSource, geometry: QuiltGeometry) -> QuiltIndex:
    """The quilt's index, from its first columns (column 0, and more only if the index needs them)."""
    columns = index_columns_needed(source(0), geometry)
    size = struct.unpack_from("<I", source(0), 1)[0]
    body = read_columns(source, geometry, 0, INDEX_PREFIX_SIZE, size, columns)
    return QuiltIndex.from_bytes(body, columns, geometry.n_columns)


@dataclass(frozen=True)
class DecodedPatch:
    identifier: str
    tags: tuple[tuple[str, str], ...]
    data: bytes = field(repr=False)


def decode_patch(source: ColumnSource, geometry: QuiltGeometry, start_column: int, end_column: int) -> DecodedPatch:
    """The blob in columns [start_column, end_column), with its identifier and tags, from
    those columns only."""
    if not 0 <= start_column < end_column <= geometry.n_columns:
        raise QuiltError(f"columns {start_column}..{end_column} are outside a quilt of {geometry.n_columns}")
    head = read_columns(source, geometry, start_column, 0, BLOB_HEADER_SIZE, end_column)
    version, length, mask = struct.unpack("<BIB", head)
    if version != QUILT_VERSION_V1:
        raise QuiltError(f"no patch begins at column {start_column} (version byte {version})")
    if mask & ~TAGS_FLAG:
        raise QuiltError(f"the patch at column {start_column} has unknown flags {mask:#x}")
    body = read_columns(source, geometry, start_column, BLOB_HEADER_SIZE, length, end_column)
    r = _Reader(body, "quilt patch")
    ident_raw = r.take(r.u16())
    ir = _Reader(ident_raw, "quilt patch identifier")
    identifier = ir.string()
    ir.end()
    tags: tuple[tuple[str, str], ...] = ()
    if mask & TAGS_FLAG:
        tr = _Reader(r.take(r.u16()), "quilt patch tags")
        tags = tr.tags()
        tr.end()
    try:
        validate_identifier(identifier)
    except QuiltError as exc:
        raise r.fail(str(exc)) from None
    return DecodedPatch(identifier, tags, body[r.pos:])


def patch_from_blob(quilt_blob: bytes, n_shards: int, identifier: str) -> DecodedPatch:
    """One patch of a whole quilt blob, by identifier."""
    geo = QuiltGeometry.of_blob(n_shards, len(quilt_blob))
    source = columns_of(quilt_blob, geo)
    patch = decode_index(source, geo).by_identifier(identifier)
    return decode_patch(source, geo, patch.start_index, patch.end_index)


def patch_id_str(quilt_id: bytes, patch: QuiltPatch) -> str:
    return str(patch.patch_id(quilt_id))


__all__ = [
    "QuiltBlob", "QuiltPatch", "QuiltPatchId", "QuiltIndex", "QuiltGeometry", "EncodedQuilt", "DecodedPatch",
    "QuiltError", "QuiltPatchNotFoundError", "InvalidPatchIdError", "encode_quilt", "decode_index",
    "decode_patch", "read_columns", "columns_of", "compute_symbol_size", "max_patches", "patch_from_blob",
    "validate_identifier", "index_columns_needed", "blob_id_to_str",
]
