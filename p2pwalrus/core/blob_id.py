"""Blob IDs: 32 bytes, printed as URL-safe base64 without padding (Walrus's form)."""

from __future__ import annotations

import base64

from ..errors import InvalidBlobIdError

BLOB_ID_LEN = 32


def blob_id_to_str(blob_id: bytes) -> str:
    return base64.urlsafe_b64encode(blob_id).rstrip(b"=").decode("ascii")


def parse_blob_id(text: str) -> bytes:
    """Walrus's base64url form, or any multibase form of the same 32 bytes."""
    text = text.strip()
    if len(text) == 43:
        try:
            raw = base64.urlsafe_b64decode(text + "=")
        except (ValueError, TypeError):
            raw = b""
        if len(raw) == BLOB_ID_LEN and blob_id_to_str(raw) == text:
            return raw
    try:
        from multiformats import multibase

        raw = bytes(multibase.decode(text))
    except Exception as exc:  # multiformats raises several error types
        raise InvalidBlobIdError(
            f"{text!r} is not a blob ID: expected 43 characters of URL-safe base64 "
            f"or a multibase string of 32 bytes ({exc})"
        ) from None
    if len(raw) != BLOB_ID_LEN:
        raise InvalidBlobIdError(f"{text!r} decodes to {len(raw)} bytes; a blob ID has 32")
    return raw
