"""A minimal ASGI toolkit: requests, responses, errors in Walrus's shape, HTTP ranges.

Hand-written on purpose: the gateway needs a streamed, size-limited request body and
exact control of headers, and nothing here depends on an event loop (hypercorn runs
it on trio).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from ..errors import BadRange, HTTPError, Unsatisfiable

# Google RPC status names, as Walrus's daemon uses them in its error bodies.
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "FAILED_PRECONDITION",  # the gateway's account cannot pay for the store (Walrus: insufficient funds)
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    408: "DEADLINE_EXCEEDED",
    410: "FAILED_PRECONDITION",
    413: "OUT_OF_RANGE",
    416: "OUT_OF_RANGE",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


DRAIN_BYTES = 16 << 20  # of a refused body, read and dropped before answering 413
DRAIN_SECONDS = 5.0
BODY_DEADLINE = 120.0  # a whole request body, however it is trickled


def error_body(status: int, message: str) -> dict:
    return {"error": {"code": status, "status": STATUS_NAMES.get(status, "UNKNOWN"), "message": message,
                      "details": []}}


@dataclass
class Request:
    scope: dict
    receive: object
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    client_ip: str
    path_params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_scope(cls, scope: dict, receive) -> "Request":
        headers: dict[str, str] = {}
        for k, v in scope.get("headers", []):
            name = k.decode("latin-1").lower()
            val = v.decode("latin-1")
            headers[name] = f"{headers[name]}, {val}" if name in headers else val
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        client = scope.get("client") or ("unknown", 0)
        return cls(scope, receive, scope["method"].upper(), scope["path"], query, headers, str(client[0]))

    async def body(self, limit: int, deadline: float = BODY_DEADLINE) -> bytes:
        """The whole body, refused with 413 as soon as it would exceed `limit` bytes, and
        with 408 if it has not all arrived within `deadline` seconds (a trickled body
        would otherwise hold its slot forever).

        A declared Content-Length over the limit is refused before a byte is read. The
        refused rest of a body is read and dropped (at most DRAIN_BYTES, DRAIN_SECONDS)
        so that the client, still sending, gets the 413 rather than a reset connection.
        """
        import trio

        try:
            with trio.fail_after(deadline):
                return await self._body(limit)
        except trio.TooSlowError:
            raise HTTPError(408, f"the request body did not arrive within {deadline:.0f} s",
                            {"Connection": "close"}) from None

    async def _body(self, limit: int) -> bytes:
        declared = self.headers.get("content-length")
        if declared is not None:
            if not _ASCII_DIGITS.fullmatch(declared.strip()) or len(declared.strip()) > 18:
                raise HTTPError(400, "bad Content-Length")
            n = int(declared)
            if n > limit:
                if "100-continue" not in self.headers.get("expect", "").lower() and n <= DRAIN_BYTES:
                    await self._drain()
                raise HTTPError(413, f"body of {n} bytes exceeds the limit of {limit} bytes")
        buf = bytearray()
        while True:
            msg = await self.receive()
            if msg["type"] == "http.disconnect":
                raise HTTPError(400, "client disconnected before the body was complete")
            chunk = msg.get("body", b"")
            if len(buf) + len(chunk) > limit:
                if msg.get("more_body", False):
                    await self._drain()
                raise HTTPError(413, f"body exceeds the limit of {limit} bytes")
            buf += chunk
            if not msg.get("more_body", False):
                return bytes(buf)

    def body_source(self, limit: int | None, deadline: float = BODY_DEADLINE) -> "BodySource":
        """The body as a stream of chunks (client/chunked.py's ChunkSource), never all in memory."""
        return BodySource(self, limit, deadline)

    async def _drain(self) -> None:
        import trio

        seen = 0
        with trio.move_on_after(DRAIN_SECONDS):
            while seen <= DRAIN_BYTES:
                msg = await self.receive()
                seen += len(msg.get("body", b""))
                if msg["type"] == "http.disconnect" or not msg.get("more_body", False):
                    return


class BodySource:
    """A request body read as it is needed: `readinto(buf)` fills `buf` (fewer bytes only at
    the end of the body). The body is refused with 413 as soon as it would exceed `limit`
    bytes (None: no limit), a declared Content-Length over it before a byte is read; with
    408 if one buffer's worth has not arrived within `deadline` seconds (a trickled body
    would otherwise hold its slot forever, yet a large one may take long in all)."""

    def __init__(self, req: Request, limit: int | None, deadline: float = BODY_DEADLINE):
        self.req, self.limit, self.deadline = req, limit, deadline
        self.seen = 0  # body bytes received so far
        self.rest = b""
        self.ended = False
        self.declared: int | None = None
        declared = req.headers.get("content-length")
        if declared is not None:
            if not _ASCII_DIGITS.fullmatch(declared.strip()) or len(declared.strip()) > 18:
                raise HTTPError(400, "bad Content-Length")
            self.declared = int(declared)

    async def check_declared(self) -> None:
        if self.limit is not None and self.declared is not None and self.declared > self.limit:
            if "100-continue" not in self.req.headers.get("expect", "").lower() and self.declared <= DRAIN_BYTES:
                await self.req._drain()
            raise HTTPError(413, f"body of {self.declared} bytes exceeds the limit of {self.limit} bytes")

    async def readinto(self, buf) -> int:
        import trio

        try:
            with trio.fail_after(self.deadline):
                return await self._readinto(buf)
        except trio.TooSlowError:
            raise HTTPError(408, f"the request body stalled for {self.deadline:.0f} s",
                            {"Connection": "close"}) from None

    async def _readinto(self, buf) -> int:
        got = 0
        while got < len(buf):
            if not self.rest:
                if self.ended:
                    break
                msg = await self.req.receive()
                if msg["type"] == "http.disconnect":
                    raise HTTPError(400, "client disconnected before the body was complete")
                self.rest = msg.get("body", b"")
                self.ended = not msg.get("more_body", False)
                self.seen += len(self.rest)
                if self.limit is not None and self.seen > self.limit:
                    if not self.ended:
                        await self.req._drain()
                    raise HTTPError(413, f"body exceeds the limit of {self.limit} bytes")
            k = min(len(buf) - got, len(self.rest))
            buf[got:got + k] = self.rest[:k]
            self.rest = self.rest[k:]
            got += k
        return got


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    omit_body: bool = False  # HEAD: every header of GET, no body
    # A body written piece by piece: `await stream(write)` calls `await write(piece)` in order
    # (`body` is then unused; set Content-Length in `headers`). The status line and headers
    # go out with the first piece, so an error before it can still be answered as one.
    stream: object = None
    started: bool = False
    sent: int = 0  # body bytes sent

    async def send(self, send) -> None:
        headers = {**self.headers}
        if self.content_type and "content-type" not in {k.lower() for k in headers}:
            headers["Content-Type"] = self.content_type
        if "content-length" not in {k.lower() for k in headers}:
            headers["Content-Length"] = str(len(self.body))
        raw = [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()]

        async def start() -> None:
            if not self.started:
                self.started = True
                await send({"type": "http.response.start", "status": self.status, "headers": raw})

        if self.stream is None or self.omit_body:
            await start()
            body = b"" if self.omit_body else self.body
            self.sent += len(body)
            await send({"type": "http.response.body", "body": body})
            return

        async def write(piece) -> None:
            await start()
            self.sent += len(piece)
            await send({"type": "http.response.body", "body": bytes(piece), "more_body": True})

        await self.stream(write)
        await start()
        await send({"type": "http.response.body", "body": b""})


def json_response(obj, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(obj, indent=None, separators=(",", ":")).encode(),
                    dict(headers or {}), "application/json")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response(error_body(status, message), status, headers)


# --- ranges (RFC 9110 section 14) -----------------------------------------------------


_ASCII_DIGITS = re.compile(r"[0-9]+", re.ASCII)
MAX_RANGE_HEADER = 256  # characters; longer is refused before parsing
_HUGE = 1 << 62  # any position of more digits than fit in 18 stands for "past any blob"


def _position(text: str) -> int:
    """An ASCII decimal byte position (never int() on 5,000 digits or on non-ASCII digits)."""
    if not _ASCII_DIGITS.fullmatch(text):
        raise BadRange(f"byte position {text[:20]!r} is not a decimal number")
    text = text.lstrip("0") or "0"
    return int(text) if len(text) <= 18 else _HUGE


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The single byte range [start, end] (inclusive) that `header` selects, or None for the full body.

    Per RFC 9110, a Range in another unit or asking for several ranges is ignored (the
    full representation is served, which a server may always do). A byte range that does
    not parse raises BadRange (400: strict, so a client's mistake is not mistaken for a
    whole-blob answer); a valid single range that selects no byte raises Unsatisfiable
    (416). Nothing else is raised, whatever the header holds.
    """
    if header is None:
        return None
    if len(header) > MAX_RANGE_HEADER:
        raise BadRange(f"Range header longer than {MAX_RANGE_HEADER} characters")
    unit, sep, spec = header.strip().partition("=")
    if not sep:
        raise BadRange("Range must be bytes=FIRST-LAST, bytes=FIRST- or bytes=-SUFFIX")
    if unit.strip().lower() != "bytes":
        return None
    spec = spec.strip()
    if "," in spec:
        return None  # multiple ranges: served as 200 with the whole blob
    first, dash, last = spec.partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not (first or last):
        raise BadRange("Range must be bytes=FIRST-LAST, bytes=FIRST- or bytes=-SUFFIX")
    if not first:  # suffix: the last N bytes
        n = _position(last)
        if n == 0 or size == 0:
            raise Unsatisfiable()
        return max(0, size - n), size - 1
    start = _position(first)
    end_given = _position(last) if last else None
    if end_given is not None and end_given < start:
        raise BadRange("Range ends before it starts")
    if start >= size:
        raise Unsatisfiable()
    end = min(end_given, size - 1) if end_given is not None else size - 1
    return start, end
