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
    except Exception:  # multiformats raises several error types; their text is not the user's business
        raise InvalidBlobIdError(
            f"{_shown(text)} is not a blob ID: expected 43 characters of URL-safe base64 "
            f"or a multibase string of 32 bytes"
        ) from None
    if len(raw) != BLOB_ID_LEN:
        raise InvalidBlobIdError(f"{_shown(text)} decodes to {len(raw)} bytes; a blob ID has 32")
    return raw


def _shown(text: str) -> str:
    """The input as an error message shows it: quoted, and cut if long (it may be anyone's)."""
    return repr(text) if len(text) <= 60 else repr(text[:60]) + f"... ({len(text)} characters)"
