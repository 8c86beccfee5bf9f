"""The CLI's side of files of any size (client/chunked.py): `store` of a file larger than one
blob, `read` streamed to its output, `blob-status` of a manifest. Kept apart from cli.py,
which calls in here, so that the commands there stay thin."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


def _few_worker_threads() -> None:
    """Tune this (CLI) process for a long transfer, once it is connected.

    At most one worker thread per core: each sliver a read fetches is verified in a worker
    thread as it arrives, about 3.5 times its size in temporaries (a primary sliver at 31
    shards: 4.8 MB over its 1.4 MB); with trio's default of 40 threads, the slivers of two
    chunks in flight verified all at once held over 100 MB more, for no speed on two cores.
    And the objects alive now (modules, libp2p's state) are frozen out of garbage collection,
    so that the full collections chunked transfers make (chunked.collect_garbage) look only
    at what the transfer made."""
    import gc
    import os

    import trio

    trio.to_thread.current_default_thread_limiter().total_tokens = max(2, os.cpu_count() or 2)
    # No gc.collect() first: with libp2p loaded, that full collection took 25-60 ms of every
    # read's and store's wall clock (py-spy), to spare the little garbage the imports left,
    # which now stays frozen with them.
    gc.freeze()


def wants_chunks(path: str, n_shards: int, chunk_size: int | None) -> bool:
    """Whether `path` is stored as chunks and a manifest: standard input (its size is unknown
    until it ends: stored as one blob if it fits), a file larger than one blob (or than
    --chunk-size), or one that would read back as a manifest. A path that cannot be read
    is left to the single-blob path, which names the problem."""
    from .core.manifest import HEADER_LEN, needs_manifest

    if path == "-":
        return True
    try:
        p = Path(path)
        if not p.is_file():
            return False
        size = p.stat().st_size
        with open(p, "rb") as fh:
            head = fh.read(HEADER_LEN)
    except OSError:
        return False
    return needs_manifest(size, head, n_shards) or (chunk_size is not None and size > chunk_size)


def store_large(net, path: str, *, epochs: int, deletable: bool, force: bool, as_json: bool,
                chunk_size: int | None) -> None:
    from . import cli_common
    from .client.chunked import ChunkedStoreResult, FileSource, store_stream
    from .core.blob_id import blob_id_to_str

    total = None if path == "-" else Path(path).stat().st_size

    async def run(client):
        _few_worker_threads()
        progress = cli_common.store_progress()

        def on_chunk(certified: int, started: int) -> None:
            cli_common.note_interrupt(f"interrupted; {certified} chunk(s) certified, the file is not stored yet: "
                                "run the same store again to resume (certified chunks are not uploaded again)")

        fh = sys.stdin.buffer if path == "-" else open(path, "rb")
        try:
            return await store_stream(client, FileSource(fh), epochs=epochs, deletable=deletable, force=force,
                                      progress=progress, total=total, chunk_size=chunk_size, on_chunk=on_chunk)
        finally:
            if fh is not sys.stdin.buffer:
                fh.close()

    result = cli_common.with_client(net, run)
    cli_common.note_interrupt(f"interrupted; {blob_id_to_str(result.blob_id)} is certified")
    if as_json:
        from .gateway.walrus_json import blob_store_json

        click.echo(json.dumps(blob_store_json(result), indent=2))
        return
    cert = result.certificate
    if not isinstance(result, ChunkedStoreResult):
        if result.already_certified:
            click.echo(f"already certified until epoch {cert.end_epoch}", err=True)
        else:
            click.echo(f"stored {result.size} bytes on {result.shards_confirmed}/{net.n_shards} shards, "
                       f"certified at epoch {cert.epoch} until {cert.end_epoch}", err=True)
    else:
        chunks = len(result.manifest.chunks)
        click.echo(f"stored {result.size} bytes as {chunks} chunks ({result.chunks_uploaded} uploaded, "
                   f"{result.chunks_skipped} already certified) and a manifest, certified until epoch "
                   f"{cert.end_epoch} ({result.seconds:.2f} s, {result.size / 1e6 / max(result.seconds, 1e-9):.1f} MB/s)",
                   err=True)
    click.echo(blob_id_to_str(result.blob_id))


def read_out(net, raw_id: bytes, fh, *, strict: bool, raw: bool) -> int:
    """Read a blob or a chunked file into the binary file `fh`, streamed; the bytes written."""
    import trio

    from . import cli_common
    from .client.chunked import read_to

    from .errors import P2PWalrusError

    async def write(piece) -> None:
        try:
            await trio.to_thread.run_sync(fh.write, piece)
        except OSError as exc:
            raise P2PWalrusError(f"cannot write the output: {exc.strerror or exc}") from None

    async def run(client):
        _few_worker_threads()
        written, _ = await read_to(client, raw_id, write, strict=strict, raw=raw, progress=cli_common.progress())
        return written

    return cli_common.with_client(net, run)


def blob_status(net, raw_id: bytes, as_json: bool) -> None:
    from . import cli_common
    from .client.chunked import blob_status as status_of

    status = cli_common.with_client(net, lambda c: status_of(c, raw_id))
    if as_json:
        click.echo(json.dumps(status))
        return
    click.echo(f"{status['blob_id']}: {status['status']}, {status['shards_stored']}/{status['n_shards']} shards stored"
               + (f", epochs {status['certified_epoch']}..{status['end_epoch']}" if status["end_epoch"] else ""))
    f = status.get("file")
    if f:
        missing = f" (not certified: chunks {', '.join(map(str, f['not_certified']))})" if f["not_certified"] else ""
        click.echo(f"a file of {f['size']} bytes in {f['chunks']} chunks: {f['chunks_certified']} certified, "
                   f"each on at least {f['min_shards_stored']}/{status['n_shards']} shards, "
                   f"until epoch {f['end_epoch']}{missing}")
