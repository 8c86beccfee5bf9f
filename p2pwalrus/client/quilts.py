"""Storing quilts, and reading one patch of a quilt from its own columns.

A quilt is stored as an ordinary blob (core/quilt.py lays it out). To read a patch, the
reader fetches the secondary slivers of the quilt's first column (the index) and of the
patch's columns from their holders, each verified against the quilt's metadata, and
nothing else: a patch of one column costs two slivers of R symbols each, not a decode of
the quilt. If a column cannot be had (its holder is down or lies), the whole quilt is read
the ordinary way (any R primary slivers) and the patch taken from it.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import trio

from ..core import quilt as q
from ..core import rs2
from ..core.blob_id import blob_id_to_str
from ..core.messages import GetSliverRequest
from ..errors import P2PWalrusError, VerificationError
from .client import Client, Progress, StoreResult

logger = logging.getLogger("p2pwalrus.quilts")

COLUMN_TIMEOUT = 20.0  # one secondary sliver from its holder
COLUMNS_IN_FLIGHT = 16  # a patch of many columns asks this many holders at a time
# A site's or a directory's files go in quilts of at most this many bytes of file content
# (and at most max_patches files), so that one changed file re-stores a small quilt.
QUILT_TARGET_BYTES = 4 << 20
# On average one group ends every this many files (boundaries chosen by a hash of the
# identifier: inserting or removing a file moves the boundaries around it only).
GROUP_AVERAGE_FILES = 64
SIZE_CLASS_RATIO = 1.25


@dataclass
class StoredQuilt:
    quilt_id: bytes
    index: q.QuiltIndex
    result: StoreResult
    encoded_size: int = 0  # the quilt blob's length (its whole matrix)

    def patch_id(self, identifier: str) -> q.QuiltPatchId:
        return self.index.by_identifier(identifier).patch_id(self.quilt_id)


async def store_quilt(client: Client, blobs: Sequence[q.QuiltBlob], *, epochs: int = 1, deletable: bool = False,
                      force: bool = False, progress: Progress | None = None) -> StoredQuilt:
    """Lay the blobs out as one quilt and store it; a quilt already certified (the same files)
    is not uploaded again."""
    enc = await trio.to_thread.run_sync(q.encode_quilt, list(blobs), client.net.n_shards)
    result = await client.store(enc.data, epochs=epochs, deletable=deletable, force=force, progress=progress)
    return StoredQuilt(result.blob_id, enc.index, result, len(enc.data))


def size_class(nbytes: int, ratio: float = SIZE_CLASS_RATIO) -> int:
    """Files whose sizes are within about `ratio` of each other share a class."""
    return int(math.log(max(nbytes, 1), ratio))


def group_for_quilts(blobs: Sequence[q.QuiltBlob], n_shards: int, *, target_bytes: int = QUILT_TARGET_BYTES,
                     average_files: int = GROUP_AVERAGE_FILES, size_classes: bool = True) -> list[list[q.QuiltBlob]]:
    """Split blobs into groups that each make one quilt, deterministically.

    Each patch takes whole columns, sized for the quilt's largest: files of like sizes are
    grouped together (size classes, a factor SIZE_CLASS_RATIO wide) so that few columns
    are mostly padding (1,000 files of 1-10 KiB: quilts of 1.27x their content at 10
    shards, 1.20x at 31, where one class for all made 1.84x and 1.79x). Within a class,
    in identifier order, a group ends after a file whose identifier hashes to a boundary
    (on average every `average_files` files), when it holds as many files as a quilt can,
    or before it would pass `target_bytes` of content.
    Storing a changed directory again therefore gives the same quilts, and so the same
    quilt IDs, for the groups whose files did not change: a file whose content changed is
    re-stored with the rest of its group (and, if its size class changed, so is the group
    it joins); inserting or removing a file moves the boundaries around it only.
    """
    cfg = rs2.EncodingConfig(n_shards)
    most = q.max_patches(n_shards)
    limit = min(target_bytes, cfg.max_blob_size // 2)
    classes: dict[int, list[q.QuiltBlob]] = {}
    for blob in blobs:
        classes.setdefault(size_class(blob.serialized_size()) if size_classes else 0, []).append(blob)
    groups: list[list[q.QuiltBlob]] = []
    for key in sorted(classes):
        current: list[q.QuiltBlob] = []
        size = 0
        for blob in sorted(classes[key], key=lambda b: b.identifier.encode("utf-8")):
            this = blob.serialized_size()
            if current and (len(current) >= most or size + this > limit):
                groups.append(current)
                current, size = [], 0
            current.append(blob)
            size += this
            mark = int.from_bytes(hashlib.blake2b(blob.identifier.encode("utf-8"), digest_size=8).digest(), "big")
            if mark % average_files == 0:
                groups.append(current)
                current, size = [], 0
        if current:
            groups.append(current)
    return groups


async def store_quilts(client: Client, blobs: Sequence[q.QuiltBlob], *, epochs: int = 1, deletable: bool = False,
                       force: bool = False, parallel: int = 4, **grouping) -> list[StoredQuilt]:
    """Store blobs in as many quilts as they need (group_for_quilts), a few at a time."""
    groups = group_for_quilts(blobs, client.net.n_shards, **grouping)
    out: list[StoredQuilt | None] = [None] * len(groups)
    limiter = trio.CapacityLimiter(parallel)

    async def one(i: int, group: list[q.QuiltBlob]) -> None:
        async with limiter:
            out[i] = await store_quilt(client, group, epochs=epochs, deletable=deletable, force=force)

    async with trio.open_nursery() as nursery:
        for i, group in enumerate(groups):
            nursery.start_soon(one, i, group)
    return [s for s in out if s is not None]


@dataclass
class QuiltReader:
    """Reads patches of quilts through a client, fetching only the columns they need.

    `fetched` lists (quilt ID, column) of every secondary sliver asked for, and
    `whole_reads` the quilts read whole because a column could not be had.
    """

    client: Client
    fetched: list[tuple[bytes, int]] = field(default_factory=list)
    whole_reads: list[bytes] = field(default_factory=list)
    _indexes: dict[bytes, tuple[rs2.BlobMetadata, q.QuiltGeometry, q.QuiltIndex]] = field(default_factory=dict)
    _whole_quilts: dict[bytes, q.ColumnSource] = field(default_factory=dict)

    async def _column(self, quilt_id: bytes, meta: rs2.BlobMetadata, column: int) -> bytes:
        c = self.client
        n = meta.n_shards
        pair = n - 1 - column  # secondary sliver of column j is stored in pair n-1-j
        holder = c.shard_map.owner(rs2.shard_for_pair(pair, quilt_id, n))
        self.fetched.append((quilt_id, column))
        reply, raw = await c.request_with_blob(holder, GetSliverRequest(quilt_id, pair, rs2.SECONDARY),
                                               meta.config.n_primary * meta.symbol_size, COLUMN_TIMEOUT)
        if raw is None:
            raise P2PWalrusError(f"column {column}: {holder[:16]}… answered {reply.error}")
        await trio.to_thread.run_sync(rs2.verify_secondary_sliver, meta, pair, raw)
        return raw

    async def _columns(self, quilt_id: bytes, meta: rs2.BlobMetadata, columns: Iterable[int]) -> dict[int, bytes]:
        wanted = sorted(set(columns))
        got: dict[int, bytes] = {}
        limiter = trio.CapacityLimiter(COLUMNS_IN_FLIGHT)

        async def one(j: int) -> None:
            async with limiter:
                got[j] = await self._column(quilt_id, meta, j)

        async with trio.open_nursery() as nursery:
            for j in wanted:
                nursery.start_soon(one, j)
        return got

    async def _whole(self, quilt_id: bytes) -> q.ColumnSource:
        """The columns of the whole quilt, read (and decoded where needed) once per reader:
        the index and the patch may both need it when one holder has both columns."""
        found = self._whole_quilts.get(quilt_id)
        if found is None:
            self.whole_reads.append(quilt_id)
            data = await self.client.read(quilt_id)
            found = q.columns_of(data, q.QuiltGeometry.of_blob(self.client.net.n_shards, len(data)))
            self._whole_quilts[quilt_id] = found
            if len(self._whole_quilts) > 4:
                self._whole_quilts.pop(next(iter(self._whole_quilts)))
        return found

    async def index(self, quilt_id: bytes) -> tuple[rs2.BlobMetadata, q.QuiltGeometry, q.QuiltIndex]:
        """The quilt's metadata (checked against its ID, certificate checked), geometry and index."""
        if quilt_id in self._indexes:
            return self._indexes[quilt_id]
        c = self.client
        if c.shard_map is None:
            await c.refresh_membership()
        meta = await c._certified_metadata(quilt_id)
        geo = q.QuiltGeometry.of_blob(meta.n_shards, meta.unencoded_length)
        cols: dict[int, bytes] | None = None
        try:
            cols = await self._columns(quilt_id, meta, [0])
            source = cols.__getitem__
        except Exception as exc:  # a holder down or lying: every column is in the whole quilt
            logger.info("quilt %s: index column unavailable (%r); reading the quilt whole",
                        blob_id_to_str(quilt_id), exc)
            source = await self._whole(quilt_id)
        more = q.index_columns_needed(source(0), geo)
        if more > 1 and cols is not None:
            try:
                cols |= await self._columns(quilt_id, meta, range(1, more))
            except Exception as exc:
                logger.info("quilt %s: index columns unavailable (%r); reading the quilt whole",
                            blob_id_to_str(quilt_id), exc)
                source = await self._whole(quilt_id)
        index = q.decode_index(source, geo)
        self._indexes[quilt_id] = (meta, geo, index)
        if len(self._indexes) > 256:
            self._indexes.pop(next(iter(self._indexes)))
        return meta, geo, index

    async def _patch(self, quilt_id: bytes, meta: rs2.BlobMetadata, geo: q.QuiltGeometry,
                     start: int, end: int) -> q.DecodedPatch:
        try:
            cols = await self._columns(quilt_id, meta, range(start, end))
            source = cols.__getitem__
        except Exception as exc:  # a holder down or lying: every column is in the whole quilt
            logger.info("quilt %s: columns %d..%d unavailable (%r); reading the quilt whole",
                        blob_id_to_str(quilt_id), start, end, exc)
            source = await self._whole(quilt_id)
        return q.decode_patch(source, geo, start, end)

    async def read(self, quilt_id: bytes, identifier: str) -> q.DecodedPatch:
        """The patch named `identifier` (QuiltPatchNotFoundError if there is none)."""
        meta, geo, index = await self.index(quilt_id)
        patch = index.by_identifier(identifier)
        got = await self._patch(quilt_id, meta, geo, patch.start_index, patch.end_index)
        if got.identifier != identifier:
            raise VerificationError(f"the patch at columns {patch.start_index}..{patch.end_index} is named "
                                    f"{got.identifier!r}, not {identifier!r}: the quilt is inconsistent")
        return got

    async def read_by_id(self, patch_id: q.QuiltPatchId) -> q.DecodedPatch:
        """The patch a patch ID names: its columns only (the index is not read)."""
        c = self.client
        if c.shard_map is None:
            await c.refresh_membership()
        meta = await c._certified_metadata(patch_id.quilt_id)  # certificate checked on every read
        geo = q.QuiltGeometry.of_blob(meta.n_shards, meta.unencoded_length)
        if patch_id.end_index > geo.n_columns:
            raise q.QuiltPatchNotFoundError(f"the quilt has {geo.n_columns} columns; no patch ends at "
                                            f"column {patch_id.end_index}")
        return await self._patch(patch_id.quilt_id, meta, geo, patch_id.start_index, patch_id.end_index)
