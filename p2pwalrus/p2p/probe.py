"""Raw stream exchanges for hostile-peer tests and benchmarks (tests/test_hostile_wire.py,
bench/hostile.py): bytes written as they are, outside the framing and its checks."""

from __future__ import annotations

import trio

from .rpc import close_quietly


async def send_and_drain(host, peer, protocol: str, data: bytes, *, timeout: float = 10.0) -> bool:
    """Open ``protocol`` to ``peer``, write ``data``, close our side, drain whatever comes
    back, then reset the stream; every error of the peer's is swallowed (refusing is what
    a node should do). False if the stream did not open (the node may refuse the protocol
    outright), True once the exchange ended or ``timeout`` passed."""
    with trio.move_on_after(timeout):
        try:
            stream = await host.new_stream(peer, [protocol])
        except Exception:
            return False
        try:
            await stream.write(data)
            await stream.close()
            while await stream.read(65536):
                pass
        except Exception:
            pass
        finally:
            await close_quietly(stream, reset=True)
        return True
    return True
