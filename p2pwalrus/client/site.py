"""Publishing a directory as a site: small files in quilts, larger ones as blobs, and a site
manifest (a small JSON blob) naming each path, its content type and where its bytes are.

The manifest's blob ID is the site's ID; the gateway serves the site at /sites/{id}/.
Everything is content-addressed and deterministic: the same directory gives the same
quilts, blobs and manifest, so publishing it again uploads nothing, and publishing it
after a change uploads only the quilts whose files changed (group_for_quilts keeps the
other groups as they were), the changed large files and the new manifest. A quilt or blob
already certified is found by its ID before any upload (Client.store).
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import trio

from ..core import quilt as q
from ..core import rs2
from ..core.blob_id import blob_id_to_str, parse_blob_id
from ..errors import P2PWalrusError, SiteError
from .client import Client
from .chunked import BytesSource, store_file, store_stream
from .quilts import group_for_quilts, store_quilt

SITE_FORMAT = "p2pwalrus-site/1"
MAX_MANIFEST_BYTES = 16 << 20
SMALL_FILE_BYTES = 1 << 20  # files up to this size (and an eighth of a blob) go in quilts
MAX_SITE_FILES = 100_000

# The standard library's own table only (not /etc/mime.types): the same file gets the same
# type, hence the same manifest and site ID, on every machine.
_TYPES = mimetypes.MimeTypes()
_EXTRA_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
                ".webp": "image/webp", ".avif": "image/avif", ".woff2": "font/woff2", ".woff": "font/woff",
                ".svg": "image/svg+xml", ".json": "application/json", ".webmanifest": "application/manifest+json",
                ".md": "text/markdown"}


def content_type(path: str) -> str:
    suffix = PurePosixPath(path).suffix.lower()
    kind = _EXTRA_TYPES.get(suffix) or _TYPES.guess_type("x" + suffix, strict=False)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/json", "application/manifest+json", "image/svg+xml"):
        kind += "; charset=utf-8"
    return kind


@dataclass(frozen=True)
class SiteFile:
    """Where one path's bytes are: a quilt patch (`patch_id`) or a blob of its own (`blob_id`)."""

    path: str
    content_type: str
    size: int
    sha256: str
    patch_id: q.QuiltPatchId | None = None
    blob_id: bytes | None = None

    def __post_init__(self) -> None:
        _check_path(self.path)
        if (self.patch_id is None) == (self.blob_id is None):
            raise SiteError(f"site file {self.path!r} must be in exactly one quilt patch or blob")
        if not (isinstance(self.size, int) and 0 <= self.size < 1 << 48):
            raise SiteError(f"site file {self.path!r} has a bad size")
        if not (isinstance(self.sha256, str) and len(self.sha256) == 64
                and all(c in "0123456789abcdef" for c in self.sha256)):
            raise SiteError(f"site file {self.path!r} has a bad sha256")
        if not isinstance(self.content_type, str) or not 0 < len(self.content_type) <= 200 or any(
                ord(c) < 32 or ord(c) > 126 for c in self.content_type):
            raise SiteError(f"site file {self.path!r} has a bad content type")

    @property
    def content_id(self) -> str:
        """What names its bytes on the network: the patch ID or the blob ID (the ETag)."""
        return str(self.patch_id) if self.patch_id is not None else blob_id_to_str(self.blob_id)

    def to_json(self) -> dict:
        out = {"type": self.content_type, "size": self.size, "sha256": self.sha256}
        if self.patch_id is not None:
            out["patch"] = str(self.patch_id)
        else:
            out["blob"] = blob_id_to_str(self.blob_id)
        return out


def _check_path(path: str) -> None:
    parts = path.split("/")
    if not path or len(path) > 4096 or any(p in ("", ".", "..") for p in parts):
        raise SiteError(f"site path {path[:80]!r} is not a relative path of names")
    try:
        q.validate_identifier(path)
    except q.QuiltError as exc:
        raise SiteError(f"site path {path[:80]!r} cannot be published: {exc}") from None


@dataclass(frozen=True)
class SiteManifest:
    files: dict[str, SiteFile] = field(hash=False)

    def to_bytes(self) -> bytes:
        body = {"format": SITE_FORMAT, "files": {p: self.files[p].to_json() for p in sorted(self.files)}}
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> "SiteManifest":
        if len(data) > MAX_MANIFEST_BYTES:
            raise SiteError("not a site: the blob is larger than any site manifest")
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise SiteError("not a site: the blob is not a site manifest") from None
        if not isinstance(body, dict) or body.get("format") != SITE_FORMAT or not isinstance(body.get("files"), dict):
            raise SiteError(f"not a site: the blob is not a {SITE_FORMAT} manifest")
        if len(body["files"]) > MAX_SITE_FILES:
            raise SiteError("not a site: too many files")
        files = {}
        for path, entry in body["files"].items():
            if not isinstance(entry, dict) or ("patch" in entry) == ("blob" in entry):
                raise SiteError(f"bad site manifest entry for {str(path)[:80]!r}")
            try:
                patch = q.QuiltPatchId.parse(entry["patch"]) if isinstance(entry.get("patch"), str) else None
                blob = parse_blob_id(entry["blob"]) if isinstance(entry.get("blob"), str) else None
                files[path] = SiteFile(path, entry.get("type"), entry.get("size"), entry.get("sha256"), patch, blob)
            except (q.InvalidPatchIdError, P2PWalrusError, TypeError) as exc:
                raise SiteError(f"bad site manifest entry for {str(path)[:80]!r}: {exc}") from None
        return cls(files)

    def resolve(self, path: str) -> tuple[SiteFile | None, str | None]:
        """(the file to serve, None) or (None, the path to redirect to) or (None, None): 404.

        "" and "dir/" serve their index.html; "dir" (a directory) redirects to "dir/" so
        that the page's relative links resolve inside it."""
        if path == "" or path.endswith("/"):
            return self.files.get(path + "index.html"), None
        found = self.files.get(path)
        if found is not None:
            return found, None
        if path + "/index.html" in self.files:
            return None, path + "/"
        return None, None


@dataclass
class PublishResult:
    site_id: bytes
    manifest: SiteManifest
    quilts_stored: int = 0  # uploaded by this publish
    quilts_reused: int = 0  # already certified: not uploaded
    blobs_stored: int = 0
    blobs_reused: int = 0

    def to_json(self) -> dict:
        return {"siteId": blob_id_to_str(self.site_id), "files": len(self.manifest.files),
                "quilts": {"stored": self.quilts_stored, "reused": self.quilts_reused},
                "blobs": {"stored": self.blobs_stored, "reused": self.blobs_reused}}


def scan_directory(root: Path) -> list[tuple[str, Path]]:
    """(site path, file) of every regular file under `root`, in path order; symbolic links are
    followed only when they stay inside `root`."""
    root = Path(root)
    if not root.is_dir():
        raise SiteError(f"{root} is not a directory; pass the directory to publish")
    real_root = root.resolve()
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            if not full.resolve().is_relative_to(real_root) or not full.is_file():
                continue
            rel = full.relative_to(root).as_posix()
            _check_path(rel)
            out.append((rel, full))
    if not out:
        raise SiteError(f"{root} holds no files to publish")
    if len(out) > MAX_SITE_FILES:
        raise SiteError(f"{root} holds {len(out)} files; a site has at most {MAX_SITE_FILES}")
    return out


def _sha256_of(source: bytes | Path) -> str:
    if isinstance(source, Path):
        h = hashlib.sha256()
        with open(source, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
        return h.hexdigest()
    return hashlib.sha256(source).hexdigest()


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SiteError(f"cannot read {path}: {exc.strerror or exc}") from None


async def publish_files(client: Client, files: dict[str, bytes | Path], *, epochs: int = 1) -> PublishResult:
    """Publish {site path: bytes or a file's path}: small files in quilts, the others as blobs
    (in chunks with a file manifest when larger than one blob holds, read from disk as they
    are stored), then the site manifest."""
    n = client.net.n_shards
    cfg = rs2.EncodingConfig(n)
    small_limit = min(SMALL_FILE_BYTES, cfg.max_blob_size // 8)
    for path in files:
        _check_path(path)
    sizes = {}
    for path, src in files.items():
        try:
            sizes[path] = src.stat().st_size if isinstance(src, Path) else len(src)
        except OSError as exc:
            raise SiteError(f"cannot read {src}: {exc.strerror or exc}") from None
    small = {}
    for path, src in files.items():
        if sizes[path] <= small_limit:
            small[path] = await trio.to_thread.run_sync(_read_file, src) if isinstance(src, Path) else src
    large = {p: src for p, src in files.items() if sizes[p] > small_limit}
    result = PublishResult(b"", SiteManifest({}))
    entries: dict[str, SiteFile] = {}

    def entry(path: str, size: int, sha256: str, **where) -> SiteFile:
        return SiteFile(path, content_type(path), size, sha256, **where)

    groups = group_for_quilts([q.QuiltBlob(p, d) for p, d in small.items()], n)
    limiter = trio.CapacityLimiter(4)

    async def quilt(group: list[q.QuiltBlob]) -> None:
        async with limiter:
            stored = await store_quilt(client, group, epochs=epochs)
        if stored.result.already_certified:
            result.quilts_reused += 1
        else:
            result.quilts_stored += 1
        for blob in group:
            entries[blob.identifier] = entry(blob.identifier, len(blob.data), hashlib.sha256(blob.data).hexdigest(),
                                             patch_id=stored.patch_id(blob.identifier))

    async def blob(path: str, src: bytes | Path) -> None:
        async with limiter:
            try:
                digest = await trio.to_thread.run_sync(_sha256_of, src)
                # One blob, or chunks and a file manifest when larger than one blob holds.
                if isinstance(src, Path):
                    stored = await store_file(client, src, epochs=epochs)
                else:
                    stored = await store_stream(client, BytesSource(src), total=len(src), epochs=epochs)
            except OSError as exc:
                raise SiteError(f"cannot read {src}: {exc.strerror or exc}") from None
        if stored.already_certified:
            result.blobs_reused += 1
        else:
            result.blobs_stored += 1
        entries[path] = entry(path, sizes[path], digest, blob_id=stored.blob_id)

    async with trio.open_nursery() as nursery:
        for group in groups:
            nursery.start_soon(quilt, group)
        for path, src in large.items():
            nursery.start_soon(blob, path, src)
    manifest = SiteManifest(entries)
    raw = manifest.to_bytes()
    stored = await client.store(raw, epochs=epochs)
    result.site_id, result.manifest = stored.blob_id, manifest
    return result


async def publish_directory(client: Client, root: Path, *, epochs: int = 1) -> PublishResult:
    """Publish every file under `root` (see publish_files); large files are read as they are stored."""
    return await publish_files(client, dict(scan_directory(root)), epochs=epochs)
