"""Serve an ASGI app with hypercorn on the running trio loop: the pieces the gateway and
the node's metrics endpoint share.

It sits below both (gateway/ and node/ import it; it imports neither), and it imports
nothing heavy at module level: hypercorn loads when a server starts.
"""

from __future__ import annotations

import logging

import trio

_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: %s\r\nConnection: close\r\n"
         b"Retry-After: 1\r\nContent-Length: %d\r\n\r\n%s")
DEFAULT_BUSY_BODY = b"too many open connections; retry later\n"


def busy_reply(body: bytes = DEFAULT_BUSY_BODY, content_type: str = "text/plain") -> bytes:
    """The whole HTTP 503 answer to a connection over the cap."""
    return _BUSY % (content_type.encode(), len(body), body)


async def handle_lifespan(receive, send) -> None:
    """Answer an ASGI lifespan scope: nothing to set up or tear down."""
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def install_connection_cap() -> None:
    """Make hypercorn's trio TCP server honour ``config.p2pwalrus_connections`` (a
    trio.CapacityLimiter): a connection over the cap is answered ``config.p2pwalrus_busy_reply``
    (a 503) and closed at once, before a byte of its request is read; and close a connection
    as soon as its reading ends (``read_timeout`` included). Idempotent; configs without a
    limiter are uncapped."""
    import hypercorn.trio.run as run_module
    from hypercorn.trio.tcp_server import TCPServer

    if getattr(run_module.TCPServer, "_p2pwalrus_capped", False):
        return

    class CappedTCPServer(TCPServer):
        _p2pwalrus_capped = True

        async def _read_data(self) -> None:
            await super()._read_data()
            # The client went silent past read_timeout, closed, or broke: hypercorn 0.18 would
            # close the socket only once its task group ends (a half-sent request kept the
            # connection, and its slot, open). Close it now.
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                try:
                    await self.stream.aclose()
                except Exception:
                    pass
            self._free_slot()

        def _free_slot(self) -> None:
            slot, self._slot = getattr(self, "_slot", None), None
            if slot is not None:
                slot.release_on_behalf_of(self)

        async def run(self) -> None:
            limiter = getattr(self.config, "p2pwalrus_connections", None)
            if limiter is None:
                await super().run()
                return
            try:
                limiter.acquire_on_behalf_of_nowait(self)
            except trio.WouldBlock:
                reply = getattr(self.config, "p2pwalrus_busy_reply", None) or busy_reply()
                with trio.move_on_after(1):
                    try:
                        await self.stream.send_all(reply)
                    except Exception:
                        pass
                with trio.move_on_after(1):
                    try:
                        await self.stream.aclose()
                    except Exception:
                        pass
                return
            self._slot = limiter
            try:
                await super().run()
            finally:
                self._free_slot()

    run_module.TCPServer = CappedTCPServer


def hypercorn_config(bind: str, *, max_connections: int | None = None, read_timeout: float | None = None,
                     busy: bytes | None = None):
    """A hypercorn Config for one bind address; ``busy``: the whole 503 reply over the cap."""
    from hypercorn.config import Config

    cfg = Config()
    cfg.bind = [bind]
    cfg.accesslog = None
    cfg.errorlog = logging.getLogger("hypercorn.error")
    cfg.graceful_timeout = 2.0
    cfg.keep_alive_timeout = 30.0
    if read_timeout is not None:
        cfg.read_timeout = read_timeout  # s without a byte from the client: connection closed
    install_connection_cap()
    if max_connections is not None:
        cfg.p2pwalrus_connections = trio.CapacityLimiter(max_connections)
    if busy is not None:
        cfg.p2pwalrus_busy_reply = busy
    return cfg


async def serve_asgi(app, bind: str, *, max_connections: int | None = None, read_timeout: float | None = None,
                     busy: bytes | None = None, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve an ASGI app with hypercorn on the running trio loop; started() gets the bound URLs."""
    from hypercorn.trio import serve

    cfg = hypercorn_config(bind, max_connections=max_connections, read_timeout=read_timeout, busy=busy)
    await serve(app, cfg, mode="asgi", task_status=task_status)
