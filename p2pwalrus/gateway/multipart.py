"""A quilt upload read from its multipart/form-data body: the boundary, the parts (at most
MAX_FORM_PARTS), and the quilt blobs they name (an optional `_metadata` part gives tags).
"""

from __future__ import annotations

import json
import re

from ..core import quilt as q
from .asgi import HTTPError

MAX_FORM_PARTS = 10_000
QUILT_FORM_OVERHEAD = 4 << 20  # multipart headers of up to MAX_FORM_PARTS parts


def multipart_boundary(content_type: str) -> bytes:
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        raise HTTPError(400, "send the quilt's files as multipart/form-data (curl -F name=@file)")
    m = re.search(r'boundary=(?:"([^"]{1,70})"|([^\s;"]{1,70}))', params)
    if not m:
        raise HTTPError(400, "the multipart/form-data Content-Type has no boundary")
    return (m.group(1) or m.group(2)).encode("latin-1")


def _disposition(value: str) -> dict[str, str]:
    kind, _, rest = value.partition(";")
    if kind.strip().lower() != "form-data":
        raise HTTPError(400, "a multipart part is not form-data")
    out = {}
    for m in re.finditer(r'\s*([A-Za-z*]+)=(?:"((?:[^"\\]|\\.)*)"|([^;]*))\s*(?:;|$)', rest):
        out[m.group(1).lower()] = m.group(2).replace('\\"', '"') if m.group(2) is not None else m.group(3).strip()
    return out


def parse_multipart(body: bytes, boundary: bytes) -> list[tuple[str, str | None, bytes]]:
    """(field name, file name or None, content) of each part, in order."""
    delimiter = b"--" + boundary
    if not body.startswith(delimiter):
        start = body.find(b"\r\n" + delimiter)
        if start < 0:
            raise HTTPError(400, "the multipart body does not contain its boundary")
        body = body[start + 2:]
    chunks = body.split(b"\r\n" + delimiter)
    first = chunks[0][len(delimiter):]
    chunks[0] = first
    parts = []
    for i, chunk in enumerate(chunks):
        if chunk.startswith(b"--"):  # the close delimiter
            break
        if i == len(chunks) - 1:
            raise HTTPError(400, "the multipart body is truncated (no closing boundary)")
        if not chunk.startswith(b"\r\n"):
            raise HTTPError(400, "malformed multipart body")
        head, sep, content = chunk[2:].partition(b"\r\n\r\n")
        if not sep:
            raise HTTPError(400, "a multipart part has no header end")
        headers = {}
        for line in head.split(b"\r\n"):
            name, colon, value = line.decode("utf-8", "replace").partition(":")
            if not colon:
                raise HTTPError(400, "malformed multipart part header")
            headers[name.strip().lower()] = value.strip()
        disp = _disposition(headers.get("content-disposition", ""))
        if "name" not in disp:
            raise HTTPError(400, "a multipart part has no field name")
        parts.append((disp["name"], disp.get("filename"), content))
        if len(parts) > MAX_FORM_PARTS:
            raise HTTPError(400, f"more than {MAX_FORM_PARTS} parts in one form")
    else:
        raise HTTPError(400, "the multipart body is truncated (no closing boundary)")
    return parts


def quilt_blobs_from_form(parts: list[tuple[str, str | None, bytes]]) -> list[q.QuiltBlob]:
    """Walrus's form: every field but `_metadata` is a file named by its field; `_metadata` is
    `[{"identifier": ..., "tags": {...}}]`."""
    tags: dict[str, dict] = {}
    files: dict[str, bytes] = {}
    for name, _filename, content in parts:
        if name == "_metadata":
            try:
                meta = json.loads(content)
                assert isinstance(meta, list)
                for item in meta:
                    assert isinstance(item, dict) and isinstance(item["identifier"], str)
                    item_tags = item.get("tags") or {}
                    assert isinstance(item_tags, dict) and all(
                        isinstance(k, str) and isinstance(v, str) for k, v in item_tags.items())
                    tags[item["identifier"]] = item_tags
            except (ValueError, AssertionError, KeyError, TypeError):
                raise HTTPError(400, '_metadata must be JSON: [{"identifier": "...", "tags": {"k": "v"}}]') from None
            continue
        if name.startswith("_"):
            raise HTTPError(400, f"identifier {name!r} starts with '_', which is reserved")
        if name in files:
            raise HTTPError(400, f"identifier {name!r} is given twice; identifiers must be unique in a quilt")
        files[name] = content
    if not files:
        raise HTTPError(400, "no files in the form: send each as a field named by its identifier")
    unknown = set(tags) - set(files)
    if unknown:
        raise HTTPError(400, f"_metadata names identifiers that are not in the form: {sorted(unknown)[:5]}")
    try:
        return [q.QuiltBlob(name, data, tags.get(name, {})) for name, data in files.items()]
    except q.QuiltError as exc:
        raise HTTPError(400, str(exc)) from None
