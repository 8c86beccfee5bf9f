"""Reading a file of any size: the manifest told from a plain blob, then its chunks in order, a few
ahead, each verified, the whole file's hash checked at the end; a byte range reads only its chunks.
"""

from __future__ import annotations

import math
from typing import Awaitable, Callable

import trio

from ..core import rs2
from ..core.blob_id import blob_id_to_str
from ..core.manifest import HEADER_LEN, KIND_FILE, FileManifest, ManifestError, content_hash, is_manifest, unpack
from ..errors import VerificationError
from .client import Client, Progress
from .chunk_budget import collect_garbage, read_parallelism, return_large_buffers
from .chunked_store import ChunkProgress, unwrap_group


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
        self.inner = ChunkProgress(parent, size)

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
        raise unwrap_group(group) from None
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
