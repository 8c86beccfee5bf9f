"""Files of any size: chunks stored as blobs in parallel plus a file manifest, streamed reads.

A file larger than one blob (or one that would read back as a manifest, see
core/manifest.py) is cut into chunks of `chunk_size` bytes (by default the largest blob for
the shard count). Each chunk is read, hashed and RS2-encoded in a worker thread, one after
the other, and stored as an ordinary blob (`Client.store_encoded`) while the next one is
being encoded: at most `parallel` encoded chunks exist at any time (the memory bound), never
the whole file. Then the manifest (chunk blob IDs, sizes, the file's Blake2b-256) is stored
as one more blob; its ID is the file's.

Resuming: `store_encoded` looks a blob's certificate up before uploading it, so a store run
again after it stopped half-way re-encodes each chunk (which gives the same blob ID) and
uploads only the chunks that are not certified yet.

Reading: the manifest is read like any blob; its chunks are then read in order, up to
`readahead` at a time, each verified against its blob ID as every read is, checked for its
size, and handed to the writer in order; the whole file's hash is checked at the end. A byte
range reads only the chunks it overlaps.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol

import trio

from ..core import rs2
from ..core.blob_id import blob_id_to_str
from ..core.manifest import (
    HEADER_LEN,
    KIND_FILE,
    ChunkRef,
    FileManifest,
    ManifestError,
    check_chunk_size,
    content_hash,
    default_chunk_size,
    is_manifest,
    max_chunks,
    unpack,
)
from ..errors import P2PWalrusError, VerificationError
from .client import Client, Progress, StoreResult

logger = logging.getLogger("p2pwalrus.chunked")

STORE_MEMORY = 128 << 20  # encoded chunks alive at once during a store, about
READ_MEMORY = 64 << 20  # chunks being read or waiting to be written, about (a chunk's read holds twice it)
MAX_PARALLEL = 8
MMAP_THRESHOLD = 1 << 20


def return_large_buffers() -> None:
    """Have glibc map buffers of MMAP_THRESHOLD bytes and more on their own and unmap them
    when freed (mallopt M_MMAP_THRESHOLD; elsewhere a no-op). By default the threshold grows
    to 32 MiB as large buffers are freed, after which chunk-sized buffers come from heaps
    that (one per worker thread) keep their pages: measured on a 128 MiB file at 31 shards,
    the client's peak memory went from 277 to 258 MB for a store, 384 to 302 MB for a read."""
    global _returning
    if _returning:
        return
    _returning = True
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


_returning = False

GC_EVERY = 32 << 20  # bytes of chunks stored or read between full garbage collections
_since_gc = 0


def collect_garbage(nbytes: int) -> None:
    """A full garbage collection once every GC_EVERY bytes of chunks. A chunk's read or store
    leaves reference cycles behind (cancelled tasks, exceptions and their frames) that keep
    slivers and buffers alive until a full collection, which the allocation counts that
    drive Python's collector rarely call for: measured on a 256 MiB read at 31 shards, the
    client's peak memory went from 261 MB to 161 MB with a collection after every chunk."""
    global _since_gc
    _since_gc += nbytes
    if _since_gc >= GC_EVERY:
        import gc

        _since_gc = 0
        gc.collect()


def encoded_footprint(chunk_size: int, n_shards: int) -> int:
    """Bytes an encoded chunk holds (EncodedBlob: source rows, row recovery, lower primaries)."""
    cfg = rs2.EncodingConfig(n_shards)
    r, c, f = cfg.n_primary, cfg.n_secondary, cfg.f
    return cfg.symbol_size(chunk_size) * (r * c + r * f + 2 * f * c)


def store_parallelism(chunk_size: int, n_shards: int) -> int:
    """Chunks in flight during a store: as many as STORE_MEMORY holds, 2 to MAX_PARALLEL
    (two, so that the next chunk encodes while one uploads)."""
    return max(2, min(MAX_PARALLEL, STORE_MEMORY // encoded_footprint(chunk_size, n_shards)))


def read_parallelism(chunk_size: int) -> int:
    """Chunks fetched ahead during a read (a chunk's read holds its slivers and its bytes)."""
    return max(2, min(MAX_PARALLEL, READ_MEMORY // max(1, 2 * chunk_size)))


# --- sources -----------------------------------------------------------------------------


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


# --- store -------------------------------------------------------------------------------


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


class _ChunkProgress(Progress):
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


def _unwrap(group: BaseExceptionGroup) -> BaseException:
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
            chunk_progress = _ChunkProgress(progress, length)
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
        raise _unwrap(group) from None
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


# --- read --------------------------------------------------------------------------------


async def read_blob_or_manifest(client: Client, blob_id: bytes, *, strict: bool = False,
                                progress: Progress | None = None) -> bytes | FileManifest:
    """A blob's bytes, or its FileManifest if it is one (other manifest kinds come back as bytes)."""
    data = await client.read(blob_id, strict=strict, progress=progress)
    return parse_if_file_manifest(data, blob_id)


def parse_if_file_manifest(data, blob_id: bytes) -> bytes | FileManifest:
    if not is_manifest(data) or unpack(data)[0] != KIND_FILE:
        return data
    try:
        return FileManifest.from_bytes(data)
    except ManifestError as exc:
        raise ManifestError(f"blob {blob_id_to_str(blob_id)} begins as a file manifest but is not a valid one "
                            f"({exc}); `read --raw` gives its bytes as they are") from None


class _ReadProgress(Progress):
    """A chunk's sliver bytes, seen as its share of the file's bytes."""

    def __init__(self, parent: Progress, size: int):
        self.inner = _ChunkProgress(parent, size)

    def start(self, description: str, total: int) -> None:
        self.inner.start(description, total)

    def advance(self, amount: int) -> None:
        self.inner.advance(amount)


async def stream_chunks(client: Client, manifest: FileManifest, write: Callable[[memoryview], Awaitable[None]], *,
                        start: int = 0, end: int | None = None, readahead: int | None = None,
                        fetch: Callable[[bytes, Progress], Awaitable[bytes]] | None = None,
                        progress: Progress | None = None, strict: bool = False) -> int:
    """Write bytes [start, end] (inclusive; default: the whole file) of the file in order.

    Only the chunks the range overlaps are read, `readahead` at a time, each checked against
    its blob ID (by the read) and its listed size. For the whole file, the content hash is
    checked at the end (VerificationError if it differs: the data was already written, the
    caller discards it). `fetch(blob_id, progress)` reads a chunk (default: `client.read`).
    Returns the bytes written.
    """
    progress = progress or Progress()
    if manifest.total_size == 0:
        return 0
    end = manifest.total_size - 1 if end is None else end
    pieces = manifest.chunks_for_range(start, end)
    whole = start == 0 and end == manifest.total_size - 1
    readahead = readahead or read_parallelism(max(c.size for c in manifest.chunks))
    if fetch is None:
        async def fetch(bid: bytes, prog: Progress) -> bytes:
            return await client.read(bid, strict=strict, progress=prog)
    hasher = content_hash() if whole else None
    limiter = trio.Semaphore(readahead)
    written = 0

    class Slot:
        def __init__(self):
            self.done = trio.Event()
            self.data = None

    async def get(slot: Slot, index: int, lo: int, hi: int) -> None:
        ref = manifest.chunks[index]
        data = await fetch(ref.blob_id, _ReadProgress(progress, hi - lo))
        if len(data) != ref.size:
            raise VerificationError(f"chunk {index} ({blob_id_to_str(ref.blob_id)}) has {len(data)} bytes, "
                                    f"the manifest lists {ref.size}")
        slot.data = data
        slot.done.set()

    try:
        async with trio.open_nursery() as nursery:
            send, recv = trio.open_memory_channel(math.inf)

            async def ahead() -> None:
                async with send:
                    for index, lo, hi in pieces:
                        await limiter.acquire()
                        slot = Slot()
                        nursery.start_soon(get, slot, index, lo, hi)
                        await send.send((slot, lo, hi))

            nursery.start_soon(ahead)
            async with recv:
                async for slot, lo, hi in recv:
                    await slot.done.wait()
                    data, slot.data = slot.data, None
                    piece = memoryview(data)[lo:hi]
                    if hasher is not None:
                        await trio.to_thread.run_sync(hasher.update, piece)
                    await write(piece)
                    written += len(piece)
                    del data, piece
                    collect_garbage(hi - lo)
                    limiter.release()
    except BaseExceptionGroup as group:
        raise _unwrap(group) from None
    if hasher is not None and hasher.digest() != manifest.content_hash:
        raise VerificationError("the file's chunks do not hash to the manifest's content hash: "
                                "the manifest was made wrongly by its writer")
    return written


async def read_to(client: Client, blob_id: bytes, write: Callable[[memoryview], Awaitable[None]], *,
                  strict: bool = False, raw: bool = False, progress: Progress | None = None,
                  readahead: int | None = None) -> tuple[int, FileManifest | None]:
    """Read a blob or a chunked file to `write`, in order; (bytes written, its manifest or None).

    `raw`: a manifest's own bytes, not the file it describes."""
    progress = progress or Progress()
    parts = await client.read_parts(blob_id, strict=strict, progress=progress)
    if not raw and (is_manifest(parts[0]) or (len(parts[0]) < HEADER_LEN and len(parts) > 1)):
        parts = [b"".join(parts)]  # (a manifest is small: one join)
    found = parts[0] if raw or len(parts) > 1 else parse_if_file_manifest(parts[0], blob_id)
    if not isinstance(found, FileManifest):
        # The blob's parts as they came (views of its systematic slivers): no 64 MiB join first.
        for part in parts:
            await write(memoryview(part))
        return sum(len(p) for p in parts), None
    del parts
    return_large_buffers()
    progress.done()  # the manifest's own read; the file's bar counts the file's bytes
    progress.start("reading", found.total_size)
    try:
        written = await stream_chunks(client, found, write, readahead=readahead, progress=progress, strict=strict)
    finally:
        progress.done()
    return written, found


# --- status ------------------------------------------------------------------------------


async def peek_head(client: Client, blob_id: bytes) -> bytes:
    """The first bytes of a certified blob (at least HEADER_LEN if it has them), from its first
    systematic primary sliver alone when its holder serves it (a manifest is recognised
    without reading a large blob), else from a whole read."""
    meta = await client.metadata(blob_id)
    if meta.unencoded_length <= HEADER_LEN:
        return await client.read(blob_id)
    holder = client.shard_map.owner(rs2.shard_for_pair(0, blob_id, meta.n_shards))
    sliver = await client._fetch_primary(meta, blob_id, 0, holder, {})
    if sliver is not None and len(sliver) >= HEADER_LEN:
        return bytes(sliver[:min(len(sliver), meta.unencoded_length)])
    return await client.read(blob_id)


async def blob_status(client: Client, blob_id: bytes, *, parallel: int = 8) -> dict:
    """`Client.blob_status`, and for a file manifest a "file" summary of its chunks: how many
    are certified, the fewest shards any stores, the earliest end epoch, the missing ones."""
    status = await client.blob_status(blob_id)
    if status["status"] != "certified" or not is_manifest(await peek_head(client, blob_id)):
        return status
    found = parse_if_file_manifest(await client.read(blob_id), blob_id)
    if not isinstance(found, FileManifest):
        return status
    results = await client.gather(list(dict.fromkeys(c.blob_id for c in found.chunks)),
                                  client.blob_status, limit=parallel)
    per_chunk = [results[c.blob_id] for c in found.chunks]
    ok = [r for r in per_chunk if isinstance(r, dict)]
    certified = [r for r in ok if r["status"] == "certified"]
    status["file"] = {
        "size": found.total_size,
        "content_hash": found.content_hash.hex(),
        "chunks": len(found.chunks),
        "chunks_certified": len(certified),
        "min_shards_stored": min((r["shards_stored"] for r in ok), default=0),
        "end_epoch": min((r["end_epoch"] for r in certified), default=None),
        "not_certified": [i for i, r in enumerate(per_chunk)
                          if not isinstance(r, dict) or r["status"] != "certified"][:50],
    }
    return status


async def file_manifest_of(client: Client, blob_id: bytes) -> FileManifest | None:
    """The blob's FileManifest if it is one (certified), else None; small reads only."""
    await client.certified(blob_id)
    if not is_manifest(await peek_head(client, blob_id)):
        return None
    found = parse_if_file_manifest(await client.read(blob_id), blob_id)
    return found if isinstance(found, FileManifest) else None


async def extend(client: Client, blob_id: bytes, epochs: int, *, parallel: int = 4):
    """`Client.extend`, and for a file manifest every chunk first (a file whose chunks expired
    before its manifest could not be read); returns the manifest's new certificate."""
    manifest = await file_manifest_of(client, blob_id)
    if manifest is not None:
        results = await client.gather(list(dict.fromkeys(c.blob_id for c in manifest.chunks)),
                                      lambda bid: client.extend(bid, epochs), limit=parallel)
        failed = {bid: exc for bid, exc in results.items() if isinstance(exc, Exception)}
        already = [bid for bid, exc in failed.items() if "already stored until" in str(exc)]
        for bid in already:
            del failed[bid]
        if failed:
            bid, exc = next(iter(failed.items()))
            raise P2PWalrusError(f"{len(failed)} of the file's {len(manifest.chunks)} chunks were not extended "
                                 f"(chunk {blob_id_to_str(bid)}: {exc}); run extend again")
    return await client.extend(blob_id, epochs)


async def delete(client: Client, blob_id: bytes) -> int:
    """`Client.delete`, and for a file manifest its chunks too (after the manifest, so that the
    file is gone at once); returns how many nodes deleted the manifest."""
    manifest = await file_manifest_of(client, blob_id)
    count = await client.delete(blob_id)
    if manifest is not None:
        await client.gather(list(dict.fromkeys(c.blob_id for c in manifest.chunks)), client.delete, limit=4)
    return count
