"""The decided-chain request (``protocols.EPOCH_CHAIN``), the asking side: one for nodes that
missed epoch changes and for clients. On the floor both stand on, so a client pulls the chain
without importing node code or the agreement runner (CLI start-up time)."""

from __future__ import annotations

from ..core.wal.epoch_state import MAX_CERT_BYTES, MAX_STATE_BYTES, EpochState, StateCertificate
from ..core.wal.messages import MAX_LINKS_PER_REPLY, ChainReply, ChainRequest, parse_reply
from . import rpc
from .framing import read_frame

__all__ = ["MAX_LINKS_PER_REPLY", "request_links"]


async def request_links(stream, first: int) -> list[tuple[EpochState, StateCertificate]]:
    """Ask for the decided links from epoch ``first`` on: at most MAX_LINKS_PER_REPLY, each
    frame bounded, parsed but not verified (the caller checks each with verify_link). A
    refusal is no links."""
    await rpc.send_json(stream, ChainRequest(first).to_json())
    reply = parse_reply(await rpc.recv_json(stream), ChainReply)
    got = []
    for _ in range(reply.count if isinstance(reply, ChainReply) else 0):
        state = EpochState.from_bytes(await read_frame(stream, MAX_STATE_BYTES))
        cert = StateCertificate.from_bytes(await read_frame(stream, MAX_CERT_BYTES))
        got.append((state, cert))
    return got
