"""The blob routes: the publisher's PUT /v1/blobs (one blob, or a file streamed as chunks) and the
aggregator's GET/HEAD /v1/blobs/{id} and byte ranges, through a cache of decoded blobs.
"""

from __future__ import annotations

import time
from collections import OrderedDict

import trio

from ..client.client import BlobExpiredError
from ..core.blob_id import blob_id_to_str, parse_blob_id
from ..core.storage_period import epochs_problem
from ..errors import InvalidBlobIdError
from .asgi import BadRange, HTTPError, Request, Response, Unsatisfiable, json_response, parse_range
from ..client.chunked import BytesSource, ChunkedStoreResult, parse_if_file_manifest, store_stream, stream_chunks
from ..core.manifest import HEADER_LEN, FileManifest, default_chunk_size, is_manifest, needs_manifest
from .walrus_json import publisher_store_json
from .outcomes import classify
from .params import bool_param, int_param
from ..daemon_link import DETAIL_HEADER


IMMUTABLE = "public, max-age=31536000, immutable"
BUFFERED_BODY = 64 << 20  # a PUT body limit up to this is read whole before storing (nothing is stored
# of a body refused as too large); above it, or without a limit, the body is streamed as chunks


def _store_detail(result, n_shards: int) -> str:
    """The store's figures, for the CLI through `p2pwalrus daemon` (Walrus's body has no room for them)."""
    import json

    figures = {"n_shards": n_shards}
    for name in ("shards_confirmed", "encode_seconds", "encode_waited", "upload_seconds", "node_verify_seconds",
                 "node_write_seconds"):
        value = getattr(result, name, None)
        if isinstance(value, (int, float)):
            figures[name] = round(value, 4) if isinstance(value, float) else value
    return json.dumps(figures, separators=(",", ":"))


class _Prefixed:
    """A ChunkSource: bytes already read, then the rest of a body."""

    def __init__(self, prefix: bytes, rest):
        self.prefix, self.rest = memoryview(prefix), rest

    @property
    def seen(self) -> int:
        return self.rest.seen

    async def readinto(self, buf) -> int:
        k = min(len(buf), len(self.prefix))
        buf[:k] = self.prefix[:k]
        self.prefix = self.prefix[k:]
        return k + (await self.rest.readinto(buf[k:]) if k < len(buf) else 0)


class BlobCache:
    """LRU of decoded blobs, bounded in bytes."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.used = 0
        self.entries: OrderedDict[bytes, list] = OrderedDict()  # blob_id -> [data, end_epoch, checked_at]

    def get(self, blob_id: bytes) -> list | None:
        entry = self.entries.get(blob_id)
        if entry is not None:
            self.entries.move_to_end(blob_id)
        return entry

    def put(self, blob_id: bytes, data: bytes, end_epoch: int) -> None:
        if len(data) > self.capacity:
            return
        self.drop(blob_id)
        self.entries[blob_id] = [data, end_epoch, time.monotonic()]
        self.used += len(data)
        while self.used > self.capacity:
            _, (old, _, _) = self.entries.popitem(last=False)
            self.used -= len(old)

    def drop(self, blob_id: bytes) -> None:
        entry = self.entries.pop(blob_id, None)
        if entry is not None:
            self.used -= len(entry[0])


class BlobRoutes:
    """Gateway methods: storing and reading blobs."""

    async def put_blob(self, req: Request) -> Response:
        self._check_publisher_access(req)
        q = req.query
        epochs = int_param(q, "epochs", 1, minimum=1)
        if why := epochs_problem(epochs, self.client.net.max_epochs_ahead):
            raise HTTPError(400, why)
        deletable, permanent = bool_param(q, "deletable"), bool_param(q, "permanent")
        if deletable and permanent:
            raise HTTPError(400, "a blob cannot be both deletable and permanent")
        force = bool(bool_param(q, "force"))
        limit = self.config.max_body
        n = self.client.net.n_shards
        one_blob = default_chunk_size(n)
        source = None
        t0 = time.perf_counter()
        try:
            if "path" in q:  # `p2pwalrus daemon`: the file is read here, not sent as the body
                buf, length = await self._local_file(q["path"], one_blob)
                result = await self.client.store(buf, epochs=epochs, deletable=bool(deletable), force=force,
                                                 length=length)
                data = None  # nothing to cache: the daemon keeps no blobs
            else:
                if limit is not None and limit <= BUFFERED_BODY:
                    data = await req.body(limit, self.config.body_deadline)
                else:
                    # Streamed: the first blob's worth is read; a body that ends within it is one
                    # blob, a longer one goes on as chunks (never more than a few chunks in memory).
                    source = req.body_source(limit, self.config.body_deadline)
                    await source.check_declared()
                    head = bytearray(min(one_blob + 1,
                                         source.declared + 1 if source.declared is not None else one_blob + 1))
                    got = await source.readinto(memoryview(head))
                    data = bytes(head[:got]) if got <= one_blob else None
                    if data is None:
                        source = _Prefixed(bytes(head[:got]), source)
                    del head
                if data is not None and not needs_manifest(len(data), data[:HEADER_LEN], n):
                    result = await self.client.store(data, epochs=epochs, deletable=bool(deletable), force=force)
                else:
                    result = await store_stream(self.client, source if data is None else BytesSource(data),
                                                epochs=epochs, deletable=bool(deletable), force=force)
        except Exception as exc:
            found = classify(exc)
            if isinstance(exc, HTTPError):
                found = (exc.status, "too_large" if exc.status == 413 else "bad_request", exc.message)
            outcome = found[1] if found else "error"
            self.metrics.stores.labels(outcome).inc()
            if outcome != "too_large":
                self._note("store", None, source.seen if source else None, outcome, t0)
            raise
        size = result.size
        self.metrics.bytes_in.inc(size)
        elapsed = time.perf_counter() - t0
        self.metrics.store_seconds.observe(elapsed)
        outcome = "already_certified" if result.already_certified else "newly_created"
        self.metrics.stores.labels(outcome).inc()
        self._note("store", result.blob_id, size, outcome, t0, shards=result.shards_confirmed,
                   end_epoch=result.certificate.end_epoch)
        headers = {DETAIL_HEADER: _store_detail(result, n)}
        if isinstance(result, ChunkedStoreResult):
            return json_response(publisher_store_json(result), headers=headers)
        if not result.already_certified and data is not None:
            self.cache.put(result.blob_id, data, result.certificate.end_epoch)
            self._cache_gauges()
        return json_response(publisher_store_json(result), headers=headers)

    async def _read_to_local_file(self, blob_id_text: str, path: str) -> int:
        """GET ?out=PATH: the blob, or the whole chunked file it is the manifest of, written into
        the empty file at `path`. The blob's parts are written as read, never joined."""
        blob_id, parts = await self._read(blob_id_text, as_parts=True)
        first = parts[0] if parts else b""
        head = bytes(memoryview(first)[:HEADER_LEN]) if len(first) >= HEADER_LEN else b"".join(parts)[:HEADER_LEN]
        if is_manifest(head):  # a manifest is small: join it to parse it
            data = b"".join(parts)
            return await self._write_local_file(path, [data], parse_if_file_manifest(data, blob_id))
        return await self._write_local_file(path, parts, None)

    async def _write_local_file(self, path: str, parts: list, manifest) -> int:
        """The blob's `parts` (or the whole chunked file `manifest` names) written into the empty
        file at `path` instead of a response body: `p2pwalrus daemon` only, for its own user's
        CLI, which made that file and renames it once this returns. Returns the bytes written."""
        import os
        import stat

        if not self.config.local_files:
            raise HTTPError(400, "this gateway does not write local files: read the response body")
        if not os.path.isabs(path):
            raise HTTPError(400, f"{path!r} is not an absolute path")
        try:
            fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            raise HTTPError(400, f"{path}: {exc.strerror or exc}") from None
        try:
            st = os.fstat(fd)
            if not (stat.S_ISREG(st.st_mode) and st.st_size == 0):
                raise HTTPError(400, f"{path} is not an empty regular file")

            def put(piece) -> None:
                view = memoryview(piece).cast("B")
                while view.nbytes:
                    view = view[os.write(fd, view):]

            try:
                if isinstance(manifest, FileManifest):
                    async def write(piece) -> None:
                        await trio.to_thread.run_sync(put, piece)

                    if not manifest.total_size:
                        return 0
                    return await stream_chunks(self.client, manifest, write)
                def put_all() -> int:
                    for part in parts:
                        put(part)
                    return sum(memoryview(p).nbytes for p in parts)

                return await trio.to_thread.run_sync(put_all)
            except OSError as exc:
                raise HTTPError(400, f"cannot write {path}: {exc.strerror or exc}") from None
        finally:
            os.close(fd)

    async def _local_file(self, path: str, one_blob: int):
        """A file named by the caller, read straight into the encoder's padded buffer (no HTTP
        body, no copy): `p2pwalrus daemon` only, for its own user's CLI."""
        import os

        from ..core import rs2

        if not self.config.local_files:
            raise HTTPError(400, "this gateway does not read local files: send the blob as the request body")
        if not os.path.isabs(path):
            raise HTTPError(400, f"{path!r} is not an absolute path")

        def read():
            try:
                with open(path, "rb") as fh:
                    size = os.fstat(fh.fileno()).st_size
                    if size > one_blob:
                        raise HTTPError(413, f"{path} has {size} bytes, more than one blob ({one_blob}): "
                                             "store it as chunks")
                    buf = rs2.blob_buffer(size, self.client.net.n_shards, filled_by_caller=True)  # or refused
                    got = fh.readinto(memoryview(buf)[:size])
            except OSError as exc:
                raise HTTPError(400, f"{path}: {exc.strerror or exc}") from None
            if got != size:
                raise HTTPError(400, f"{path} changed while being read ({got} of {size} bytes)")
            if needs_manifest(size, bytes(buf[:HEADER_LEN]), self.client.net.n_shards):
                raise HTTPError(400, f"{path} would read back as a chunked file's manifest: store it as chunks")
            return buf, size

        return await trio.to_thread.run_sync(read)

    def _cache_gauges(self) -> None:
        self.metrics.cache_bytes.set(self.cache.used)
        self.metrics.cache_entries.set(len(self.cache.entries))

    async def _cached(self, blob_id: bytes) -> bytes | None:
        entry = self.cache.get(blob_id)
        if entry is None:
            return None
        data, end_epoch, checked = entry
        if end_epoch <= self.client.net.current_epoch():
            self.cache.drop(blob_id)
            raise BlobExpiredError(f"blob {blob_id_to_str(blob_id)} expired at epoch {end_epoch}")
        if time.monotonic() - checked > self.config.recheck_after:
            try:
                cert = await self.client.certified(blob_id)  # invalid or expired since: refuse it
            except Exception:
                self.cache.drop(blob_id)
                self._cache_gauges()
                raise
            entry[1], entry[2] = cert.end_epoch, time.monotonic()
        return data

    async def fetch(self, blob_id: bytes, *, as_parts: bool = False) -> tuple[bytes | list, bool]:
        """The blob's bytes and whether they came from the cache; one network read per blob at a time.

        `as_parts`: the blob as a list of consecutive parts (the client's systematic slivers, not
        joined: a 64 MiB copy saved where they are only written out), and not put in the cache."""
        while True:
            data = await self._cached(blob_id)
            if data is not None:
                return ([data] if as_parts else data), True
            pending = self._inflight.get(blob_id)
            if pending is None:
                break
            await pending.wait()  # then the cache has it, or the read failed and we try ourselves
        done = self._inflight[blob_id] = trio.Event()
        try:
            read = self.client.read_parts if as_parts else self.client.read
            checked = getattr(self.client, "checked", None)
            if checked is None:  # a plain Client: look the certificate up first
                cert = await self.client.certified(blob_id)
                data = await read(blob_id)
            else:
                data = await read(blob_id)  # reads are one at a time per blob: no race on checked
                cert = checked.pop(blob_id, None) or await self.client.certified(blob_id)
            if not as_parts:
                self.cache.put(blob_id, data, cert.end_epoch)
                self._cache_gauges()
            return data, False
        finally:
            del self._inflight[blob_id]
            done.set()

    async def _read(self, blob_id_text: str, *, as_parts: bool = False) -> tuple[bytes, bytes | list]:
        try:
            blob_id = parse_blob_id(blob_id_text)
        except InvalidBlobIdError as exc:
            raise HTTPError(400, str(exc)) from None
        t0 = time.perf_counter()
        try:
            data, hit = await self.fetch(blob_id, as_parts=as_parts)
        except Exception as exc:
            found = classify(exc)
            self.metrics.reads.labels(found[1] if found else "error").inc()
            self._note("read", blob_id, None, found[1] if found else "error", t0)
            raise
        if hit:
            self.metrics.reads.labels("cache_hit").inc()
        else:
            self.metrics.read_seconds.observe(time.perf_counter() - t0)
            self.metrics.reads.labels("ok").inc()
            self._note("read", blob_id, sum(map(len, data)) if as_parts else len(data), "ok", t0)
        return blob_id, data

    def _blob_headers(self, blob_id: bytes) -> dict[str, str]:
        return {"ETag": f'"{blob_id_to_str(blob_id)}"', "Cache-Control": IMMUTABLE, "Accept-Ranges": "bytes",
                "Content-Type": "application/octet-stream"}

    async def get_blob(self, req: Request) -> Response:
        self._check_read_access(req)
        if "out" in req.query and not self.config.local_files:  # refused before any fetch
            raise HTTPError(400, "this gateway does not write local files: read the response body")
        text = req.path_params["blob_id"]
        inm = req.headers.get("if-none-match")
        if inm and req.method in ("GET", "HEAD"):  # content never changes under a blob ID
            try:
                bid = parse_blob_id(text)
            except InvalidBlobIdError as exc:
                raise HTTPError(400, str(exc)) from None
            tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
            if f'"{blob_id_to_str(bid)}"' in tags or "*" in tags:
                return Response(304, b"", {k: v for k, v in self._blob_headers(bid).items() if k != "Content-Type"}
                                | {"Content-Length": "0"})
        head = req.method == "HEAD"
        if "out" in req.query and not head:
            return json_response({"size": await self._read_to_local_file(text, req.query["out"])})
        blob_id, data = await self._read(text)
        headers = self._blob_headers(blob_id)
        found = parse_if_file_manifest(data, blob_id)
        size = found.total_size if isinstance(found, FileManifest) else len(data)
        try:
            rng = None if head else parse_range(req.headers.get("range"), size)  # RFC 9110: GET only
        except Unsatisfiable:
            raise HTTPError(416, f"range not satisfiable for a blob of {size} bytes",
                            {"Content-Range": f"bytes */{size}"}) from None
        except BadRange as exc:
            raise HTTPError(400, f"bad Range header: {exc}") from None
        if isinstance(found, FileManifest):
            start, end = rng or (0, size - 1)
            if rng is not None:
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            return self._file_response(206 if rng else 200, found, start, end, headers, omit_body=head)
        if rng is None:
            return Response(200, data, headers, omit_body=head)
        start, end = rng
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return Response(206, data[start:end + 1], headers)

    def _file_response(self, status: int, manifest: FileManifest, start: int, end: int, headers: dict,
                       omit_body: bool = False) -> Response:
        """Bytes [start, end] of a chunked file, streamed from only the chunks they lie in
        (each read through the cache, a few ahead)."""
        headers = headers | {"Content-Length": str(end - start + 1 if manifest.total_size else 0)}

        async def fetch(bid: bytes, _progress) -> bytes:
            t0 = time.perf_counter()
            data, hit = await self.fetch(bid)
            if not hit:
                self._note("read", bid, len(data), "ok", t0, chunk=True)
            return data

        async def stream(write) -> None:
            if manifest.total_size:
                await stream_chunks(self.client, manifest, write, start=start, end=end, fetch=fetch)

        return Response(status, b"", headers, omit_body=omit_body, stream=stream)

    async def get_byte_range(self, req: Request) -> Response:
        self._check_read_access(req)
        start = int_param(req.query, "start")
        length = int_param(req.query, "length", minimum=1)
        blob_id, data = await self._read(req.path_params["blob_id"])
        found = parse_if_file_manifest(data, blob_id)
        size = found.total_size if isinstance(found, FileManifest) else len(data)
        if start >= size:
            raise HTTPError(416, f"start {start} is past the end of a blob of {size} bytes",
                            {"Content-Range": f"bytes */{size}"})
        end = min(size, start + length)
        headers = self._blob_headers(blob_id) | {"Content-Range": f"bytes {start}-{end - 1}/{size}"}
        if isinstance(found, FileManifest):
            return self._file_response(200, found, start, end - 1, headers)
        return Response(200, data[start:end], headers)
