"""Storing a file of any size: its sources (a file, bytes), each chunk hashed and encoded in a worker
thread and uploaded while the next one encodes, then the manifest (see client/chunked.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Protocol

import trio

from ..core import rs2
from ..core.blob_id import blob_id_to_str
from ..core.manifest import (
    HEADER_LEN, ChunkRef, FileManifest, ManifestError, check_chunk_size, content_hash, default_chunk_size,
    is_manifest, max_chunks,
)
from ..errors import P2PWalrusError
from .client import Client, Progress, StoreResult
from .chunk_budget import collect_garbage, encoded_footprint, return_large_buffers, store_parallelism

logger = logging.getLogger("p2pwalrus.chunked")


class ChunkSource(Protocol):
    async def readinto(self, buf: memoryview) -> int:
        """Fill `buf`; fewer bytes only at the end of the data; 0 once it is over."""


def _fill(fh, buf: memoryview) -> int:
    got = 0
    while got < len(buf):
        n = fh.readinto(buf[got:])
        if not n:
            break
        got += n
    return got


class FileSource:
    """A binary file object (a file, standard input), read in a worker thread."""

    def __init__(self, fh):
        self.fh = fh

    async def readinto(self, buf: memoryview) -> int:
        return await trio.to_thread.run_sync(_fill, self.fh, buf)


class BytesSource:
    """Bytes already in memory (a gateway body under its operator's limit, tests)."""

    def __init__(self, data):
        self.view = memoryview(data).cast("B")
        self.at = 0

    async def readinto(self, buf: memoryview) -> int:
        n = min(len(buf), len(self.view) - self.at)
        buf[:n] = self.view[self.at:self.at + n]
        self.at += n
        return n


@dataclass
class ChunkedStoreResult:
    """A file stored as chunks and a manifest. `blob_id` is the manifest's: the file's ID."""

    manifest: FileManifest
    manifest_store: StoreResult
    chunks_uploaded: int
    chunks_skipped: int  # already certified (a store run again, or the same chunk stored before)
    seconds: float = 0.0
    encode_seconds: float = 0.0  # summed over the chunks (in a worker thread, overlapping uploads)

    @property
    def blob_id(self) -> bytes:
        return self.manifest_store.blob_id

    @property
    def size(self) -> int:
        return self.manifest.total_size

    @property
    def certificate(self):
        return self.manifest_store.certificate

    @property
    def shards_confirmed(self) -> int:
        return self.manifest_store.shards_confirmed

    @property
    def already_certified(self) -> bool:
        return self.chunks_uploaded == 0 and self.manifest_store.already_certified


class ChunkProgress(Progress):
    """One chunk's upload seen as its share of the file's bytes on the file's progress."""

    def __init__(self, parent: Progress, size: int):
        self.parent, self.size = parent, size
        self.total = 0
        self.sent = 0
        self.credited = 0

    def start(self, description: str, total: int) -> None:
        self.total, self.sent = total, 0  # a retry round starts again (and credits nothing more)

    def advance(self, amount: int) -> None:
        self.sent += amount
        self._credit(self.size * self.sent // self.total if self.total else 0)

    def _credit(self, upto: int) -> None:
        upto = min(upto, self.size)
        if upto > self.credited:
            self.parent.advance(upto - self.credited)
            self.credited = upto

    def finish(self) -> None:
        self._credit(self.size)


def _leaves(exc: BaseException):
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            yield from _leaves(sub)
    elif not isinstance(exc, trio.Cancelled):
        yield exc


def unwrap_group(group: BaseExceptionGroup) -> BaseException:
    """The error to give the caller out of a nursery's group: a P2PWalrusError in it if any,
    else its only error (the source's, say), else the group."""
    leaves = list(_leaves(group))
    if any(isinstance(exc, KeyboardInterrupt) for exc in leaves):
        return group
    for exc in leaves:
        if isinstance(exc, P2PWalrusError):
            return exc
    return leaves[0] if len(leaves) == 1 else group


async def store_stream(client: Client, source: ChunkSource, *, epochs: int = 1, deletable: bool = False,
                       force: bool = False, progress: Progress | None = None, total: int | None = None,
                       chunk_size: int | None = None, parallel: int | None = None,
                       on_chunk: Callable[[int, int], None] | None = None,
                       ) -> StoreResult | ChunkedStoreResult:
    """Store whatever `source` yields: one blob if it fits in one chunk and would not read
    back as a manifest (a StoreResult), else chunks and a manifest (a ChunkedStoreResult).

    `total`: the size, if known (a file): progress counts against it, the chunk count is
    checked against the manifest's room before anything is stored, and a source that yields
    another size fails. `on_chunk(chunks_certified, chunks_so_far)` is called as chunks are
    certified (the CLI keeps its Ctrl-C note with it).
    """
    progress = progress or Progress()
    n = client.net.n_shards
    return_large_buffers()
    chunk_size = check_chunk_size(chunk_size or default_chunk_size(n), n)
    parallel = parallel or store_parallelism(chunk_size, n)
    if total is not None and -(-total // chunk_size) > max_chunks(n):
        raise ManifestError(f"a file of {total} bytes makes {-(-total // chunk_size)} chunks of {chunk_size} "
                            f"bytes; a manifest holds at most {max_chunks(n)} at {n} shards")
    if total is not None and total > chunk_size:
        await client.require_funds_for_file(total, chunk_size, epochs)  # refused before any chunk is stored
    t0 = time.perf_counter()
    slots = trio.Semaphore(parallel)  # one per chunk from its read to its certificate
    await slots.acquire()
    first = rs2.blob_buffer(chunk_size, n)
    got = await source.readinto(memoryview(first)[:chunk_size])
    more = bytearray(1)
    extra = await source.readinto(memoryview(more)) if got == chunk_size else 0
    if not extra and not is_manifest(memoryview(first)[:min(got, HEADER_LEN)]):
        if total is not None and got != total:
            raise P2PWalrusError(f"the file changed while being read ({got} of {total} bytes)")
        return await client.store(first, epochs=epochs, deletable=deletable, force=force, progress=progress,
                                  length=got)
    pending = bytes(more[:extra])

    async def read_chunk(buf: memoryview) -> int:
        nonlocal pending
        k = len(pending)
        buf[:k] = pending
        pending = b""
        return k + await source.readinto(buf[k:])

    hasher = content_hash()
    refs: dict[int, ChunkRef] = {}
    counts = {"uploaded": 0, "skipped": 0, "encode": 0.0}
    progress.start("storing", total)

    def hash_and_encode(buf, length: int):
        t = time.perf_counter()
        hasher.update(memoryview(buf)[:length])
        enc = rs2.encode_blob(buf, n, length=length)
        counts["encode"] += time.perf_counter() - t
        return enc

    async def upload(index: int, enc: rs2.EncodedBlob, length: int) -> None:
        try:
            chunk_progress = ChunkProgress(progress, length)
            res = await client.store_encoded(enc, epochs=epochs, deletable=deletable, force=force,
                                             progress=chunk_progress)
            chunk_progress.finish()
            counts["skipped" if res.already_certified else "uploaded"] += 1
            refs[index] = ChunkRef(enc.blob_id, length)
            logger.info("chunk %d (%d bytes) %s %s", index, length,
                        "already certified:" if res.already_certified else "certified:", blob_id_to_str(enc.blob_id))
            if on_chunk is not None:
                on_chunk(len(refs), index_count)
        finally:
            del enc
            collect_garbage(encoded_footprint(length, n))
            slots.release()

    index_count = 0
    read_bytes = 0
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.dial_all)
            buf, length = first, got
            del first
            while True:
                if index_count >= max_chunks(n):
                    raise ManifestError(f"more than {max_chunks(n)} chunks of {chunk_size} bytes: "
                                        f"a manifest at {n} shards lists no more")
                read_bytes += length
                enc = await trio.to_thread.run_sync(hash_and_encode, buf, length)
                del buf
                nursery.start_soon(upload, index_count, enc, length)
                del enc
                index_count += 1
                if length < chunk_size:
                    break
                await slots.acquire()  # released by an upload: at most `parallel` encoded chunks
                buf = rs2.blob_buffer(chunk_size, n)
                length = await read_chunk(memoryview(buf)[:chunk_size])
                if length == 0:
                    slots.release()
                    del buf
                    break
    except BaseExceptionGroup as group:
        raise unwrap_group(group) from None
    if total is not None and read_bytes != total:
        raise P2PWalrusError(f"the file changed while being read ({read_bytes} of {total} bytes)")
    manifest = FileManifest(read_bytes, hasher.digest(), tuple(refs[i] for i in range(index_count)))
    manifest_result = await client.store(manifest.to_bytes(), epochs=epochs, deletable=deletable, force=force)
    progress.done()
    logger.info("stored %d bytes as %d chunks (%d uploaded, %d already certified) and manifest %s",
                read_bytes, index_count, counts["uploaded"], counts["skipped"], blob_id_to_str(manifest_result.blob_id))
    return ChunkedStoreResult(manifest, manifest_result, counts["uploaded"], counts["skipped"],
                              time.perf_counter() - t0, counts["encode"])


async def store_file(client: Client, path, **kw) -> StoreResult | ChunkedStoreResult:
    """Store the file at `path` (any size): see `store_stream`."""
    import os

    with open(path, "rb") as fh:
        return await store_stream(client, FileSource(fh), total=os.fstat(fh.fileno()).st_size, **kw)
