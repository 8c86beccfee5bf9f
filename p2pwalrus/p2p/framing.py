"""Length-prefixed messages on a libp2p stream.

Wire format of one frame: unsigned LEB128 varint length (the libp2p
convention, at most 10 bytes), then exactly that many payload bytes.

Every length a peer sends is checked against the caller's ``max_size`` before
any memory is committed, and a stream that ends mid-frame is a ProtocolError.
An announced length is a bound, not a promise: buffers grow with the bytes that
actually arrive (each read returns what the stream has buffered), never
allocated at the announced size, so a peer that announces 64 MiB and stalls
costs what it sent. Every byte read is charged to the current ``ByteBudget`` (a
context variable set by the stream handler's boundary, one budget per peer), which
refuses a peer once it holds more than its share.
No function here sets a deadline: the caller wraps the exchange in
``trio.fail_after(...)`` with a bound named after what it bounds.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator

from libp2p.abc import INetStream
from libp2p.network.stream.exceptions import StreamError

from p2pwalrus.core import varint
from p2pwalrus.core.varint import encode_uvarint
from p2pwalrus.errors import ProtocolError

_SMALL_FRAME = 64 * 1024
DEFAULT_CHUNK = 1 << 20


class ByteBudget:
    """Bytes read from one peer by the handlers it has open now, bounded by ``limit``.

    Charged as bytes arrive (``_read_some``), released when a handler ends."""

    def __init__(self, limit: int, on_change=None):
        self.limit = limit
        self.used = 0
        self.on_change = on_change  # called after each charge (tests wait on it)

    def charge(self, n: int) -> None:
        self.used += n
        if self.on_change is not None:
            self.on_change()
        if self.used > self.limit:
            raise ProtocolError(f"peer has more than {self.limit} bytes in flight to this node")

    def release(self, n: int) -> None:
        self.used = max(0, self.used - n)


current_budget: contextvars.ContextVar[ByteBudget | None] = contextvars.ContextVar(
    "p2pwalrus_byte_budget", default=None)
bytes_charged: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "p2pwalrus_bytes_charged", default=None)  # what this handler charged, to release at its end


async def _read_some(stream: INetStream, n: int) -> bytes:
    try:
        data = await stream.read(n)
    except StreamError as exc:
        raise ProtocolError(f"stream ended before the frame was complete ({type(exc).__name__}: {exc})") from exc
    if not data:
        raise ProtocolError("stream ended before the frame was complete")
    budget = current_budget.get()
    if budget is not None:
        charged = bytes_charged.get()
        if charged is not None:
            charged[0] += len(data)
        budget.charge(len(data))
    return data


async def read_length(stream: INetStream, max_size: int) -> int:
    """Read a frame's varint length; ProtocolError if it exceeds ``max_size`` or is malformed.

    The bound is checked byte by byte, so an oversized length is refused as
    soon as it is known to be too large.
    """
    value = 0
    for i in range(varint.MAX_BYTES):
        byte = (await _read_some(stream, 1))[0]
        try:
            value, last = varint.fold(value, byte, i)
        except ValueError:
            raise ProtocolError("non-minimal varint frame length") from None
        if value > max_size:
            raise ProtocolError(f"peer announced a frame larger than the {max_size}-byte limit")
        if last:
            return value
    raise ProtocolError(f"frame length varint is longer than {varint.MAX_BYTES} bytes")


async def read_exactly_into(stream: INetStream, buf: bytearray | memoryview) -> None:
    """Fill ``buf`` completely from the stream (reads may return less than asked)."""
    view = memoryview(buf).cast("B")
    got, total = 0, len(view)
    while got < total:
        chunk = await _read_some(stream, min(total - got, DEFAULT_CHUNK))
        view[got : got + len(chunk)] = chunk
        got += len(chunk)


async def _read_growing(stream: INetStream, n: int) -> bytearray | bytes:
    """Exactly ``n`` bytes, held in the pieces they arrive in until the last (``n`` is a
    bound the peer announced, not memory to commit before it sends)."""
    if n == 0:
        return b""
    # Each read asks for the rest of the frame: it returns what is buffered (at most the
    # receive window), so bytes are still charged as they arrive, and a read that takes a
    # stream's whole buffer gets it without a copy (Yamux fast path 8).
    # The pieces are joined once at the end: one copy, where growing a buffer copied them
    # as it grew and turning it into bytes copied them again.
    first = await _read_some(stream, n)
    if len(first) == n:
        return first
    chunks, got = [first], len(first)
    while got < n:
        chunk = await _read_some(stream, n - got)
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


async def read_exactly(stream: INetStream, n: int) -> bytes:
    """Read exactly ``n`` bytes (the caller has already bounded ``n``)."""
    data = await _read_growing(stream, n)
    return data if isinstance(data, bytes) else bytes(data)


async def read_frame_into(stream: INetStream, into: memoryview) -> memoryview:
    """Read one frame of exactly ``len(into)`` payload bytes into ``into`` (a frame of another
    size is a ProtocolError); returns ``into``. For a caller whose buffer is memory already in
    use (a read's slivers in scratch memory): the one copy lands there, not in fresh pages."""
    view = memoryview(into).cast("B")
    n = await read_length(stream, len(view))
    if n != len(view):
        raise ProtocolError(f"peer sent a frame of {n} bytes where {len(view)} were expected")
    await read_exactly_into(stream, view)
    return into


async def write_frame(stream: INetStream, payload: bytes | bytearray | memoryview) -> None:
    """Write one frame: varint length, then the payload."""
    header = encode_uvarint(len(payload))
    if len(payload) <= _SMALL_FRAME:
        await stream.write(header + bytes(payload))
    else:  # avoid copying a large payload just to prepend a few bytes
        await stream.write(header)
        await stream.write(payload if isinstance(payload, (bytes, memoryview)) else bytes(payload))


def encode_frames(payloads) -> bytes:
    """Several frames in one buffer, for one write (each stream write is a Noise message)."""
    return b"".join(encode_uvarint(len(p)) + bytes(p) for p in payloads)


async def read_frame(stream: INetStream, max_size: int) -> bytes:
    """Read one frame of at most ``max_size`` payload bytes."""
    return await read_exactly(stream, await read_length(stream, max_size))


class FrameReader:
    """Many small frames from one stream through a buffer: one stream read (up to ``chunk``
    bytes) serves every frame it holds, where ``read_frame`` reads each length byte and each
    payload on its own. Each stream read is a checkpoint, and on a busy event loop every
    checkpoint waits for the whole run queue: a membership pull of 100 records (about 300
    reads) took more than its 10 s bound while 100 nodes joined one process. Lengths are
    checked against ``max_size`` as soon as their bytes are in, before more is read; the
    buffer holds at most one incomplete frame and one chunk."""

    def __init__(self, stream: INetStream, chunk: int = _SMALL_FRAME):
        self.stream = stream
        self.chunk = chunk
        self._buf = bytearray()
        self._pos = 0

    async def _more(self) -> None:
        data = await _read_some(self.stream, self.chunk)  # ProtocolError at the end of the stream
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    async def read_frame(self, max_size: int) -> bytes:
        """The next frame's payload (at most ``max_size`` bytes); ProtocolError as ``read_frame``."""
        while True:
            buf, pos = self._buf, self._pos
            value, header = 0, 0
            for i in range(varint.MAX_BYTES):
                if pos + i >= len(buf):
                    break  # the length is not all in yet
                try:
                    value, last = varint.fold(value, buf[pos + i], i)
                except ValueError:
                    raise ProtocolError("non-minimal varint frame length") from None
                if value > max_size:
                    raise ProtocolError(f"peer announced a frame larger than the {max_size}-byte limit")
                if last:
                    header = i + 1
                    break
            else:
                raise ProtocolError(f"frame length varint is longer than {varint.MAX_BYTES} bytes")
            if header and len(buf) - pos - header >= value:
                start = pos + header
                self._pos = start + value
                return bytes(buf[start : start + value])
            await self._more()


async def read_frame_into_buffer(stream: INetStream, max_size: int) -> bytearray:
    """Read one (large) frame into a bytearray that grows with the bytes received."""
    data = await _read_growing(stream, await read_length(stream, max_size))
    return data if isinstance(data, bytearray) else bytearray(data)


async def iter_frame_chunks(
    stream: INetStream, max_size: int, chunk_size: int = DEFAULT_CHUNK
) -> AsyncIterator[bytes]:
    """Yield one frame's payload in chunks of at most ``chunk_size`` bytes.

    For payloads streamed to disk or a hasher: keeps draining the stream (Yamux
    resets a stream whose reader stalls for 5 s) without holding it all in memory.
    """
    remaining = await read_length(stream, max_size)
    while remaining:
        chunk = await _read_some(stream, min(remaining, chunk_size))
        remaining -= len(chunk)
        yield chunk
