"""Request/response over libp2p streams: a JSON header frame, then raw binary frames.

Every frame is bounded by the reader before memory is committed (framing.py). The
protocol IDs of every exchange live here, named after what they do.
"""

from __future__ import annotations

import json
import logging

import trio

from ..errors import ProtocolError
from .log_once import LogOnce, describe as _describe
from .framing import ByteBudget, bytes_charged, current_budget, read_frame, read_frame_into, write_frame

logger = logging.getLogger(__name__)
log_once = LogOnce(logger)


MAX_HEADER = 64 << 10  # JSON headers and small replies
MAX_LIST_REPLY = 4 << 20

# What one peer may hold of a node at once, over all the stream handlers it has open.
MAX_STREAMS_PER_PEER = 256  # a read asks a holder for all its slivers at once: a gateway reading several blobs needs many
# Bytes read from one peer and not yet released, over its open handlers. A store's slivers
# are all buffered until verified: a node's share of a blob is about 4.5/N of it (N nodes),
# so 1 GiB lets one client store blobs of 2 GiB on 10 nodes; a stalled peer holds nothing.
MAX_BUFFERED_PER_PEER = 1 << 30


class PeerLimits:
    """Per-peer caps on open handler streams and on bytes buffered for them (one per node)."""

    def __init__(self, max_streams: int = MAX_STREAMS_PER_PEER, max_buffered: int = MAX_BUFFERED_PER_PEER):
        self.max_streams = max_streams
        self.max_buffered = max_buffered
        self.streams: dict[str, int] = {}
        self.budgets: dict[str, ByteBudget] = {}
        self.refused = 0
        self.changed = trio.Event()  # set (and replaced) whenever a count or a budget changes: tests wait on it

    def _notify(self) -> None:
        done, self.changed = self.changed, trio.Event()
        done.set()

    def acquire(self, peer: str) -> ByteBudget | None:
        """The peer's byte budget, with one more stream counted; None if it has too many open."""
        if self.streams.get(peer, 0) >= self.max_streams:
            self.refused += 1
            return None
        self.streams[peer] = self.streams.get(peer, 0) + 1
        budget = self.budgets.get(peer)
        if budget is None:
            budget = self.budgets[peer] = ByteBudget(self.max_buffered, self._notify)
        self._notify()
        return budget

    def release(self, peer: str, charged: int) -> None:
        left = self.streams.get(peer, 1) - 1
        budget = self.budgets.get(peer)
        if budget is not None:
            budget.release(charged)
        if left <= 0:
            self.streams.pop(peer, None)
            self.budgets.pop(peer, None)
        else:
            self.streams[peer] = left
        self._notify()

    def buffered(self, peer: str | None = None) -> int:
        if peer is not None:
            budget = self.budgets.get(peer)
            return budget.used if budget else 0
        return sum(b.used for b in self.budgets.values())

    def open_streams(self, peer: str | None = None) -> int:
        return self.streams.get(peer, 0) if peer is not None else sum(self.streams.values())


async def send_json(stream, obj) -> None:
    await write_frame(stream, json.dumps(obj, separators=(",", ":")).encode())


def parse_json_header(data: bytes) -> dict:
    """A peer's JSON header: a dict, or ProtocolError (never RecursionError, never a non-finite number)."""
    try:
        obj = json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ProtocolError("header is not JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError("header is not a JSON object")
    return obj


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    return value


async def recv_json(stream, max_size: int = MAX_HEADER) -> dict:
    return parse_json_header(await read_frame(stream, max_size))


async def recv_blob(stream, max_size: int) -> bytes:
    return await read_frame(stream, max_size)


async def reply_blob(stream, data: bytes | None) -> None:
    """Answer a get: {"ok": true} and the bytes as one frame, or {"ok": false, "error": "not found"}."""
    if data is None:
        await send_json(stream, {"ok": False, "error": "not found"})
        return
    await send_json(stream, {"ok": True})
    await write_frame(stream, data)


def field(obj: dict, name: str, kind, *, default=None, required=True):
    """A typed header field, or ProtocolError naming it."""
    if name not in obj:
        if required:
            raise ProtocolError(f"missing field {name!r}")
        return default
    value = obj[name]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ProtocolError(f"field {name!r} must be an integer")
    if kind is not int and not isinstance(value, kind):
        raise ProtocolError(f"field {name!r} must be {kind.__name__}")
    return value


def blob_id_field(obj: dict) -> bytes:
    text = field(obj, "blob_id", str)
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ProtocolError("blob_id must be hex") from None
    if len(raw) != 32:
        raise ProtocolError("blob_id must be 32 bytes")
    return raw


async def call(open_stream, header: dict, *, timeout: float, max_reply: int = MAX_LIST_REPLY):
    """One request, the caller's side (node and client alike): ``await open_stream()``, send
    ``header``, read the reply header, all within ``timeout``. Returns (stream, reply); the
    caller reads whatever follows the reply and closes the stream (``close_quietly``)."""
    with trio.fail_after(timeout):
        stream = await open_stream()
        try:
            await send_json(stream, header)
            return stream, await recv_json(stream, max_reply)
        except BaseException:
            await close_quietly(stream, reset=True)
            raise


async def call_for_reply(open_stream, header: dict, *, timeout: float, max_reply: int = MAX_LIST_REPLY) -> dict:
    """A request answered by one JSON reply (the stream is closed)."""
    stream, reply = await call(open_stream, header, timeout=timeout, max_reply=max_reply)
    await close_quietly(stream)
    return reply


async def call_for_blob(open_stream, header: dict, max_size: int, *, timeout: float,
                        into: memoryview | None = None) -> tuple[dict, bytes | memoryview | None]:
    """A request answered by a JSON reply and, when it says ok, one frame of at most
    ``max_size`` bytes (None otherwise); the reply and the frame each within ``timeout``.
    ``into``: the frame must be exactly its size and is read into it (framing.read_frame_into)."""
    stream, reply = await call(open_stream, header, timeout=timeout)
    try:
        if not reply.get("ok"):
            return reply, None
        with trio.fail_after(timeout):
            if into is not None:
                return reply, await read_frame_into(stream, into)
            return reply, await recv_blob(stream, max_size)
    finally:
        await close_quietly(stream)


async def close_quietly(stream, *, reset: bool = False) -> None:
    with trio.move_on_after(1):
        try:
            if reset:
                await stream.reset()
            else:
                await stream.close()
        except Exception:
            pass


def serve(handler, timeout: float, name: str, gate=None, limits: PeerLimits | None = None):
    """Wrap a stream handler: deadline, per-peer caps, a logged reason for refusals, a clean close.

    `gate(peer)` (fault injection) returns None to refuse the peer, else a delay in seconds.
    `limits`: the node's per-peer caps on open streams and buffered bytes (none if None).
    This is the boundary of every handler: nothing a peer sends gets past it as an exception.
    """

    async def wrapped(stream) -> None:
        try:
            peer = str(stream.muxed_conn.peer_id) if getattr(stream, "muxed_conn", None) else "?"
        except Exception:
            peer = "?"
        budget = None
        if limits is not None:
            budget = limits.acquire(peer)
            if budget is None:
                log_once(f"streams:{name}:{peer}", logging.WARNING, "%s from %s refused: over %d open streams",
                         name, peer, limits.max_streams)
                await close_quietly(stream, reset=True)
                return
        charged = [0]
        budget_token = current_budget.set(budget)
        charged_token = bytes_charged.set(charged)
        try:
            await _serve_one(stream, peer)
        finally:
            current_budget.reset(budget_token)
            bytes_charged.reset(charged_token)
            if limits is not None:
                limits.release(peer, charged[0])

    async def _serve_one(stream, peer: str) -> None:
        if gate is not None:
            delay = gate(peer)
            if delay is None:
                await close_quietly(stream, reset=True)
                return
            if delay:
                await trio.sleep(delay)
        try:
            with trio.fail_after(timeout):
                await handler(stream, peer)
            await close_quietly(stream)
        except ProtocolError as exc:
            # A reader that got enough elsewhere hangs up early: not worth a warning.
            level = logging.DEBUG if "stream ended" in str(exc) else logging.WARNING
            log_once(f"refused:{name}:{peer}", level, "%s from %s refused: %s", name, peer, exc)
            answered = False
            with trio.move_on_after(1):
                try:
                    await send_json(stream, {"ok": False, "error": str(exc)})
                    answered = True
                except Exception:
                    pass
            # A reset could overtake the answer: close gracefully when it was sent.
            await close_quietly(stream, reset=not answered)
        except trio.TooSlowError:
            log_once(f"timeout:{name}:{peer}", logging.INFO, "%s from %s timed out after %.0f s", name, peer, timeout)
            await close_quietly(stream, reset=True)
        except Exception as exc:  # a peer's stream dying mid-way, or a bug a peer found: never the node
            log_once(f"failed:{name}:{peer}", logging.INFO, "%s from %s failed: %s", name, peer, _describe(exc))
            await close_quietly(stream, reset=True)

    return wrapped
