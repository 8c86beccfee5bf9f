"""The gateway's quilt and site routes, beside Walrus's blob routes in app.py.

- `PUT /v1/quilts?epochs=N` (publisher): a multipart form, one file per field, the field's
  name its identifier; an optional `_metadata` field holds `[{"identifier", "tags"}]`.
  Answers `{"blobStoreResult": ..., "storedQuiltBlobs": [{"identifier", "quiltPatchId"}]}`.
- `GET /v1/blobs/by-quilt-id/{quilt_id}/{identifier}` and
  `GET /v1/blobs/by-quilt-patch-id/{patch_id}` (aggregator): one patch's bytes, read from
  the secondary slivers of its own columns (client/quilts.py).
- `GET /sites/{site_id}/{path}`: a published site (client/site.py): `index.html` for a
  directory, the manifest's Content-Type, an ETag from the content's ID (patch or blob ID),
  404 for a path the site does not have (its own 404.html when it has one).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from urllib.parse import quote

from ..client.chunked import parse_if_file_manifest
from ..client.quilts import QuiltReader, store_quilt
from ..client.site import SiteFile, SiteManifest
from ..core import quilt as q
from ..core.storage_period import epochs_problem
from ..core import rs2
from ..core.blob_id import blob_id_to_str, parse_blob_id
from ..core.manifest import FileManifest
from ..errors import InvalidBlobIdError, VerificationError
from .asgi import HTTPError, Request, Response, json_response
from .walrus_json import quilt_store_json
from .multipart import (  # re-exported: the form's parsing lives in multipart.py
    MAX_FORM_PARTS, QUILT_FORM_OVERHEAD, multipart_boundary, parse_multipart, quilt_blobs_from_form,
)

__all__ = ["MAX_FORM_PARTS", "QUILT_FORM_OVERHEAD", "multipart_boundary", "parse_multipart", "quilt_blobs_from_form",
           "IMMUTABLE", "PATCH_CACHE_BYTES", "SITE_SANDBOX", "QuiltRoutes", "openapi_paths", "route", "routes_of"]

IMMUTABLE = "public, max-age=31536000, immutable"
PATCH_CACHE_BYTES = 32 << 20
SITE_SANDBOX = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads"


class _PatchCache:
    """Decoded patches by patch ID, bounded in bytes; each remembers its quilt's end epoch."""

    def __init__(self, capacity: int):
        self.capacity, self.used = capacity, 0
        self.entries: OrderedDict[bytes, tuple[q.DecodedPatch, int, float]] = OrderedDict()

    def get(self, key: bytes, epoch: int, recheck_after: float) -> q.DecodedPatch | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        patch, end_epoch, at = entry
        if end_epoch <= epoch or time.monotonic() - at > recheck_after:
            self.entries.pop(key)
            self.used -= len(patch.data)
            return None
        self.entries.move_to_end(key)
        return patch

    def put(self, key: bytes, patch: q.DecodedPatch, end_epoch: int) -> None:
        if len(patch.data) > self.capacity or key in self.entries:
            return
        self.entries[key] = (patch, end_epoch, time.monotonic())
        self.used += len(patch.data)
        while self.used > self.capacity:
            _, (old, _, _) = self.entries.popitem(last=False)
            self.used -= len(old.data)


class QuiltRoutes:
    """Quilt and site handlers for one Gateway (state: a reader, a patch cache, parsed manifests)."""

    def __init__(self, gateway):
        self.gw = gateway
        self.reader = QuiltReader(gateway.client)
        self.patches = _PatchCache(PATCH_CACHE_BYTES)
        self.manifests: OrderedDict[bytes, SiteManifest] = OrderedDict()

    # --- routing ---------------------------------------------------------------------------

    def route(self, req: Request):
        """(handler table, route label) for the paths this module serves, or None."""
        path, cfg = req.path, self.gw.config
        if path == "/v1/quilts" and cfg.publisher:
            return {"PUT": self.put_quilt}, "/v1/quilts"
        if not cfg.aggregator:
            return None
        if path.startswith("/v1/blobs/by-quilt-id/"):
            quilt_id, sep, identifier = path[len("/v1/blobs/by-quilt-id/"):].partition("/")
            if quilt_id and sep and identifier:
                req.path_params.update(quilt_id=quilt_id, identifier=identifier)
                return {"GET": self.get_by_quilt_id}, "/v1/blobs/by-quilt-id/{quilt_id}/{identifier}"
        if path.startswith("/v1/blobs/by-quilt-patch-id/"):
            patch_id = path[len("/v1/blobs/by-quilt-patch-id/"):]
            if patch_id and "/" not in patch_id:
                req.path_params["patch_id"] = patch_id
                return {"GET": self.get_by_patch_id}, "/v1/blobs/by-quilt-patch-id/{patch_id}"
        if path.startswith("/sites/"):
            site_id, sep, rest = path[len("/sites/"):].partition("/")
            if site_id:
                req.path_params.update(site_id=site_id, site_path=rest, slash=sep)
                return {"GET": self.get_site}, "/sites/{site_id}/{path}"
        return None

    # --- publisher -------------------------------------------------------------------------

    async def put_quilt(self, req: Request) -> Response:
        from .params import bool_param, int_param

        gw = self.gw
        gw._check_publisher_access(req)
        epochs = int_param(req.query, "epochs", 1, minimum=1)
        if why := epochs_problem(epochs, gw.client.net.max_epochs_ahead):
            raise HTTPError(400, why)
        deletable, permanent = bool_param(req.query, "deletable"), bool_param(req.query, "permanent")
        if deletable and permanent:
            raise HTTPError(400, "a quilt cannot be both deletable and permanent")
        force = bool(bool_param(req.query, "force"))
        boundary = multipart_boundary(req.headers.get("content-type", ""))
        # A quilt is one blob: its form is bounded by the largest blob plus the form's framing.
        limit = rs2.EncodingConfig(gw.client.net.n_shards).max_blob_size + QUILT_FORM_OVERHEAD
        if gw.config.max_body is not None:
            limit = min(limit, gw.config.max_body)
        body = await req.body(limit, gw.config.body_deadline)
        gw.metrics.bytes_in.inc(len(body))
        blobs = quilt_blobs_from_form(parse_multipart(body, boundary))
        t0 = time.perf_counter()
        try:
            stored = await store_quilt(gw.client, blobs, epochs=epochs, deletable=bool(deletable), force=force)
        except q.QuiltError as exc:
            raise HTTPError(400, str(exc)) from None
        outcome = "already_certified" if stored.result.already_certified else "newly_created"
        gw.metrics.stores.labels(outcome).inc()
        gw._note("store-quilt", stored.quilt_id, stored.encoded_size, outcome, t0, patches=len(blobs))
        return json_response(quilt_store_json(stored))

    # --- aggregator ------------------------------------------------------------------------

    async def _patch(self, patch_id: q.QuiltPatchId, identifier: str | None = None) -> q.DecodedPatch:
        """The patch, from the cache or from the network (its columns only)."""
        net = self.gw.client.net
        key = patch_id.to_bytes()
        cached = self.patches.get(key, net.current_epoch(), self.gw.config.recheck_after)
        if cached is not None:
            self.gw.metrics.reads.labels("cache_hit").inc()
            return cached
        t0 = time.perf_counter()
        got = await self.reader.read_by_id(patch_id)
        if identifier is not None and got.identifier != identifier:
            raise VerificationError(f"the patch at {patch_id} is named {got.identifier!r}, not {identifier!r}")
        cert = getattr(self.gw.client, "checked", {}).pop(patch_id.quilt_id, None)
        if cert is not None:
            self.patches.put(key, got, cert.end_epoch)
        self.gw.metrics.reads.labels("ok").inc()
        self.gw._note("read-patch", patch_id.quilt_id, len(got.data), "ok", t0)
        return got

    def _patch_response(self, req: Request, patch_id: q.QuiltPatchId, patch: q.DecodedPatch) -> Response:
        etag = f'"{patch_id}"'
        headers = {"ETag": etag, "Cache-Control": IMMUTABLE, "X-Quilt-Patch-Identifier": quote(patch.identifier),
                   "Content-Type": "application/octet-stream"}
        if _matches(req, etag):
            return Response(304, b"", {k: v for k, v in headers.items() if k != "Content-Type"})
        return Response(200, patch.data, headers)

    async def get_by_quilt_id(self, req: Request) -> Response:
        self.gw._check_read_access(req)
        quilt_id = _parse_id(req.path_params["quilt_id"])
        identifier = req.path_params["identifier"]
        _, _, index = await self.reader.index(quilt_id)
        patch_id = index.by_identifier(identifier).patch_id(quilt_id)
        return self._patch_response(req, patch_id, await self._patch(patch_id, identifier))

    async def get_by_patch_id(self, req: Request) -> Response:
        self.gw._check_read_access(req)
        try:
            patch_id = q.QuiltPatchId.parse(req.path_params["patch_id"])
        except q.InvalidPatchIdError as exc:
            raise HTTPError(400, str(exc)) from None
        etag = f'"{patch_id}"'
        if _matches(req, etag):  # content never changes under a patch ID
            return Response(304, b"", {"ETag": etag, "Cache-Control": IMMUTABLE})
        return self._patch_response(req, patch_id, await self._patch(patch_id))

    # --- sites -----------------------------------------------------------------------------

    async def _manifest(self, site_id: bytes) -> SiteManifest:
        data, _ = await self.gw.fetch(site_id)  # certificate rechecked, cached like any blob
        found = self.manifests.get(site_id)
        if found is None:
            try:
                found = SiteManifest.from_bytes(data)
            except Exception as exc:
                raise HTTPError(404, f"{blob_id_to_str(site_id)} is not a site: {exc}") from None
            self.manifests[site_id] = found
            if len(self.manifests) > 64:
                self.manifests.popitem(last=False)
        return found

    async def _file_bytes(self, entry: SiteFile) -> bytes | FileManifest:
        """A file's bytes, checked against the site's manifest; or the FileManifest of a file
        stored in chunks (its chunks are bound to it by their blob IDs, and the stream checks
        the content hash)."""
        if entry.patch_id is not None:
            data = (await self._patch(entry.patch_id, entry.path)).data
        else:
            data, _ = await self.gw.fetch(entry.blob_id)
            found = parse_if_file_manifest(data, entry.blob_id)
            if isinstance(found, FileManifest):
                if found.total_size != entry.size:
                    raise VerificationError(f"the size of {entry.path!r} does not match the site's manifest")
                return found
        if len(data) != entry.size or hashlib.sha256(data).hexdigest() != entry.sha256:
            raise VerificationError(f"the bytes of {entry.path!r} do not match the site's manifest")
        return data

    async def get_site(self, req: Request) -> Response:
        self.gw._check_read_access(req)
        text = req.path_params["site_id"]
        site_id = _parse_id(text)
        if not req.path_params["slash"]:
            return Response(301, b"", {"Location": f"/sites/{text}/"})
        path = req.path_params["site_path"]
        manifest = await self._manifest(site_id)
        entry, redirect = manifest.resolve(path)
        if redirect is not None:
            return Response(301, b"", {"Location": f"/sites/{text}/{quote(redirect)}"})
        status = 200
        if entry is None:
            entry, status = manifest.files.get("404.html"), 404
            if entry is None:
                raise HTTPError(404, f"the site has no file at /{path[:200]}")
        etag = f'"{entry.content_id}"'
        # A site is anyone's content on the gateway's origin: sandboxed (an opaque origin),
        # its scripts cannot use the publisher routes as the gateway's own pages could.
        headers = {"ETag": etag, "Content-Type": entry.content_type,
                   "Cache-Control": IMMUTABLE if status == 200 else "no-cache",
                   "Content-Security-Policy": SITE_SANDBOX, "X-Content-Type-Options": "nosniff"}
        if status == 200 and _matches(req, etag):
            return Response(304, b"", {k: v for k, v in headers.items() if k != "Content-Type"})
        body = await self._file_bytes(entry)
        if isinstance(body, FileManifest):
            return self.gw._file_response(status, body, 0, body.total_size - 1, headers)
        return Response(status, body, headers)


def routes_of(gateway) -> QuiltRoutes:
    found = gateway.__dict__.get("_quilt_routes")
    if found is None:
        found = gateway.__dict__["_quilt_routes"] = QuiltRoutes(gateway)
    return found


def route(gateway, req: Request):
    """(handler table, route label) for quilt and site paths, else None (app.py's hook)."""
    if not (req.path == "/v1/quilts" or req.path.startswith(("/v1/blobs/by-quilt-", "/sites/"))):
        return None
    return routes_of(gateway).route(req)


def _parse_id(text: str) -> bytes:
    try:
        return parse_blob_id(text)
    except InvalidBlobIdError as exc:
        raise HTTPError(400, str(exc)) from None


def _matches(req: Request, etag: str) -> bool:
    inm = req.headers.get("if-none-match")
    if not inm:
        return False
    tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
    return etag in tags or "*" in tags


# --- multipart/form-data (RFC 7578), strict and small ------------------------------------------


def openapi_paths(config=None) -> dict:
    """The OpenAPI entries of the quilt and site routes (openapi.py adds them to /v1/api)."""
    def error(description: str) -> dict:
        return {"description": description,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}

    patch_bytes = {"description": "The patch's bytes", "headers": {
        "ETag": {"schema": {"type": "string"}, "description": "The quilt patch ID, quoted"},
        "X-Quilt-Patch-Identifier": {"schema": {"type": "string"}, "description": "The identifier, URL-encoded"}},
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    reads = {"400": error("Malformed ID"), "404": error("No such quilt or patch"),
             "410": error("Quilt expired or marked invalid"), "503": error("Not enough shards reachable")}
    paths: dict = {}
    if config is None or config.publisher:
        paths["/v1/quilts"] = {"put": {
            "summary": "Store files as one quilt (publisher): multipart form, one file per field named by its "
                       "identifier; `_metadata` = [{identifier, tags}]", "operationId": "putQuilt",
            "parameters": [{"name": "epochs", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 1}},
                           {"name": "deletable", "in": "query", "schema": {"type": "boolean", "default": False}},
                           {"name": "force", "in": "query", "schema": {"type": "boolean", "default": False}}],
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {"type": "object"}}}},
            "responses": {"200": {"description": "{blobStoreResult, storedQuiltBlobs: [{identifier, quiltPatchId}]}"},
                          "400": error("Bad form, identifiers or parameters"), "413": error("Body over the limit"),
                          "503": error("Not enough shards reachable to store")}}}
    if config is None or config.aggregator:
        paths["/v1/blobs/by-quilt-id/{quilt_id}/{identifier}"] = {"get": {
            "summary": "Read one file of a quilt by its identifier (its own columns only)",
            "operationId": "getBlobByQuiltId",
            "parameters": [{"name": "quilt_id", "in": "path", "required": True, "schema": {"type": "string"}},
                           {"name": "identifier", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": patch_bytes, "304": {"description": "Not modified"}, **reads}}}
        paths["/v1/blobs/by-quilt-patch-id/{patch_id}"] = {"get": {
            "summary": "Read one file of a quilt by its quilt patch ID", "operationId": "getBlobByQuiltPatchId",
            "parameters": [{"name": "patch_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": patch_bytes, "304": {"description": "Not modified"}, **reads}}}
        paths["/sites/{site_id}/{path}"] = {"get": {
            "summary": "A published site (p2pwalrus publish): index.html for a directory, the file's Content-Type, "
                       "ETag from its patch or blob ID", "operationId": "getSiteFile",
            "parameters": [{"name": "site_id", "in": "path", "required": True, "schema": {"type": "string"}},
                           {"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "The file"}, "301": {"description": "A directory: its path with /"},
                          "304": {"description": "Not modified"}, **reads}}}
    return paths
