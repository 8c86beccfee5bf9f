"""Run a gateway: one client, a membership refresh loop and hypercorn's trio worker, on one trio loop."""

from __future__ import annotations

from pathlib import Path

import logging
from functools import partial

import trio

from contextlib import asynccontextmanager

from ..config import NetworkConfig
from .app import Gateway, GatewayClient, GatewayConfig

logger = logging.getLogger("p2pwalrus.gateway")


@asynccontextmanager
async def open_gateway_client(net: NetworkConfig, keypair=None):
    """Like client.open_client, with the gateway's long-lived client class."""
    import multiaddr

    from ..p2p.host import build_host

    if keypair is None:
        from libp2p.crypto.ed25519 import create_new_key_pair

        keypair = create_new_key_pair()
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    host = build_host(keypair, listen)
    async with host.run(listen_addrs=listen):
        yield GatewayClient(net, host, keypair)


_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
         b"Retry-After: 1\r\nContent-Length: %d\r\n\r\n%s")


def _busy_reply() -> bytes:
    import json

    from .asgi import error_body

    body = json.dumps(error_body(503, "too many open connections; retry later")).encode()
    return _BUSY % (len(body), body)


def _install_connection_cap() -> None:
    """Make hypercorn's trio TCP server honour ``config.p2pwalrus_connections`` (a
    trio.CapacityLimiter): a connection over the cap is answered 503 and closed at once,
    before a byte of its request is read; and close a connection as soon as its reading
    ends (``read_timeout`` included). Idempotent; configs without a limiter are uncapped."""
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
                with trio.move_on_after(1):
                    try:
                        await self.stream.send_all(_busy_reply())
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


def hypercorn_config(bind: str, *, max_connections: int | None = None, read_timeout: float | None = None):
    from hypercorn.config import Config

    cfg = Config()
    cfg.bind = [bind]
    cfg.accesslog = None
    cfg.errorlog = logging.getLogger("hypercorn.error")
    cfg.graceful_timeout = 2.0
    cfg.keep_alive_timeout = 30.0
    if read_timeout is not None:
        cfg.read_timeout = read_timeout  # s without a byte from the client: connection closed
    _install_connection_cap()
    if max_connections is not None:
        cfg.p2pwalrus_connections = trio.CapacityLimiter(max_connections)
    return cfg


async def serve_asgi(app, bind: str, *, max_connections: int | None = None, read_timeout: float | None = None,
                     task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve an ASGI app with hypercorn on the running trio loop; started() gets the bound URLs."""
    from hypercorn.trio import serve

    cfg = hypercorn_config(bind, max_connections=max_connections, read_timeout=read_timeout)
    await serve(app, cfg, mode="asgi", task_status=task_status)


async def serve_gateway(net: NetworkConfig, config: GatewayConfig | None = None, bind: str = "127.0.0.1:31415",
                        *, keypair=None, wallet_dir=None, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run until cancelled. `nursery.start(serve_gateway, ...)` returns (gateway, [bound URLs]).

    ``wallet_dir``: on a network with a ledger, the gateway's own account (its key there,
    made on first use, and its payments' journal): PUTs are paid from it."""
    config = config or GatewayConfig()
    if wallet_dir is not None and net.genesis is not None and keypair is None:
        from ..p2p.identity import load_or_create_identity

        keypair = load_or_create_identity(Path(wallet_dir))
    async with open_gateway_client(net, keypair) as client:
        if wallet_dir is not None:
            client.payer_journal = Path(wallet_dir) / "wallet"
        gateway = Gateway(client, config)
        for attempt in range(30):  # the network may still be starting
            try:
                await gateway.refresh()
                break
            except Exception as exc:
                if attempt == 29:
                    raise
                logger.warning("no bootstrap peer answered yet (%s); retrying", exc)
                await trio.sleep(1.0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(gateway.refresh_loop)
            urls = await nursery.start(partial(serve_asgi, gateway, bind, max_connections=config.max_connections,
                                               read_timeout=config.read_timeout))
            logger.info("gateway on %s (publisher %s, aggregator %s)", " ".join(urls),
                        "on" if config.publisher else "off", "on" if config.aggregator else "off")
            task_status.started((gateway, urls))
