"""The decided-chain request (``protocols.EPOCH_CHAIN``), the client's side of it:
kept apart from epoch_service.py so that clients pull the chain without loading the
agreement machinery (CLI start-up time)."""

from __future__ import annotations

from ..core.wal.epoch_state import MAX_CERT_BYTES, MAX_STATE_BYTES, EpochState, StateCertificate
from ..errors import ProtocolError
from ..p2p import rpc
from ..p2p.framing import read_frame

MAX_LINKS_PER_REPLY = 64


async def request_links(stream, first: int) -> list[tuple[EpochState, StateCertificate]]:
    """Ask for the decided links from epoch ``first`` on: at most MAX_LINKS_PER_REPLY, each
    frame bounded, parsed but not verified (the caller checks each with verify_link)."""
    await rpc.send_json(stream, {"from": first})
    reply = await rpc.recv_json(stream)
    count = rpc.field(reply, "count", int) if reply.get("ok") else 0
    if not 0 <= count <= MAX_LINKS_PER_REPLY:
        raise ProtocolError(f"a chain reply holds at most {MAX_LINKS_PER_REPLY} links")
    got = []
    for _ in range(count):
        state = EpochState.from_bytes(await read_frame(stream, MAX_STATE_BYTES))
        cert = StateCertificate.from_bytes(await read_frame(stream, MAX_CERT_BYTES))
        got.append((state, cert))
    return got
