"""Request/response over libp2p streams: a JSON header frame, then raw binary frames.

Every frame is bounded by the reader before memory is committed (framing.py). The
protocol IDs of every exchange live here, named after what they do.
"""

from __future__ import annotations

import json
import logging

import trio
from libp2p.custom_types import TProtocol

from ..errors import ProtocolError
from .framing import read_frame, read_frame_into_buffer, write_frame

logger = logging.getLogger(__name__)

STORE = TProtocol("/p2pwalrus/store/1.0.0")
GET_METADATA = TProtocol("/p2pwalrus/metadata/1.0.0")
GET_SLIVER = TProtocol("/p2pwalrus/sliver/1.0.0")
GET_RECOVERY = TProtocol("/p2pwalrus/recovery/1.0.0")
BLOB_STATUS = TProtocol("/p2pwalrus/status/1.0.0")
GET_CERT = TProtocol("/p2pwalrus/cert/1.0.0")
PUT_CERT = TProtocol("/p2pwalrus/cert-put/1.0.0")
LIST_CERTS = TProtocol("/p2pwalrus/cert-list/1.0.0")
CONFIRM = TProtocol("/p2pwalrus/confirm/1.0.0")
NODE_INFO = TProtocol("/p2pwalrus/info/1.0.0")
PUT_PROOF = TProtocol("/p2pwalrus/proof-put/1.0.0")
GET_PROOF = TProtocol("/p2pwalrus/proof/1.0.0")
LIST_BLOBS = TProtocol("/p2pwalrus/blobs/1.0.0")
DELETE = TProtocol("/p2pwalrus/delete/1.0.0")

MAX_HEADER = 64 << 10  # JSON headers and small replies
MAX_LIST_REPLY = 4 << 20


async def send_json(stream, obj) -> None:
    await write_frame(stream, json.dumps(obj, separators=(",", ":")).encode())


async def recv_json(stream, max_size: int = MAX_HEADER) -> dict:
    data = await read_frame(stream, max_size)
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("header is not JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError("header is not a JSON object")
    return obj


async def recv_blob(stream, max_size: int) -> bytes:
    return bytes(await read_frame_into_buffer(stream, max_size))


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


async def close_quietly(stream, *, reset: bool = False) -> None:
    with trio.move_on_after(1):
        try:
            if reset:
                await stream.reset()
            else:
                await stream.close()
        except Exception:
            pass


def serve(handler, timeout: float, name: str, gate=None):
    """Wrap a stream handler: deadline, a logged reason for refusals, and a clean close.

    `gate(peer)` (fault injection) returns None to refuse the peer, else a delay in seconds.
    """

    async def wrapped(stream) -> None:
        peer = stream.muxed_conn.peer_id if getattr(stream, "muxed_conn", None) else "?"
        if gate is not None:
            delay = gate(str(peer))
            if delay is None:
                await close_quietly(stream, reset=True)
                return
            if delay:
                await trio.sleep(delay)
        try:
            with trio.fail_after(timeout):
                await handler(stream, str(peer))
            await close_quietly(stream)
        except ProtocolError as exc:
            # A reader that got enough elsewhere hangs up early: not worth a warning.
            level = logging.DEBUG if "stream ended" in str(exc) else logging.WARNING
            logger.log(level, "%s from %s refused: %s", name, peer, exc)
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
            logger.info("%s from %s timed out after %.0f s", name, peer, timeout)
            await close_quietly(stream, reset=True)
        except Exception as exc:  # a peer's stream dying mid-way must not hurt the node
            logger.info("%s from %s failed: %r", name, peer, exc)
            await close_quietly(stream, reset=True)

    return wrapped
