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

The jobs are in their own modules: chunk_budget.py plans what a transfer holds at once,
chunked_store.py stores, chunked_read.py reads; this one keeps a stored file's status,
extension and deletion (over its chunks and manifest) and re-exports every name.
"""

from __future__ import annotations

from ..core.blob_id import blob_id_to_str
from ..core.manifest import FileManifest, is_manifest
from ..errors import P2PWalrusError
from .client import Client
from .chunk_budget import (
    GC_EVERY, MAX_PARALLEL, MMAP_THRESHOLD, READ_MEMORY, STORE_MEMORY, collect_garbage, encoded_footprint,
    read_parallelism, return_large_buffers, store_parallelism,
)
from .chunked_read import parse_if_file_manifest, peek_head, read_blob_or_manifest, read_to, stream_chunks
from .chunked_store import (
    BytesSource, ChunkedStoreResult, ChunkSource, FileSource, store_file, store_stream, unwrap_group,
)

__all__ = ["GC_EVERY", "MAX_PARALLEL", "MMAP_THRESHOLD", "READ_MEMORY", "STORE_MEMORY", "BytesSource",
           "ChunkSource", "ChunkedStoreResult", "FileSource", "blob_status", "collect_garbage", "delete",
           "encoded_footprint", "extend", "file_manifest_of", "parse_if_file_manifest", "peek_head",
           "read_blob_or_manifest", "read_parallelism", "read_to", "return_large_buffers", "store_file",
           "store_parallelism", "store_stream", "stream_chunks", "unwrap_group"]


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
