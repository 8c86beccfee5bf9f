"""Run a gateway: one client, a membership refresh loop and hypercorn's trio worker, on one trio loop."""

from __future__ import annotations

import logging

import trio

from contextlib import asynccontextmanager

from ..config import NetworkConfig
from .app import Gateway, GatewayClient, GatewayConfig

logger = logging.getLogger("p2pwalrus.gateway")


@asynccontextmanager
async def open_gateway_client(net: NetworkConfig, keypair=None):
    """Like client.open_client, with the gateway's long-lived client class."""
    import multiaddr

    from ..node.host import build_host

    if keypair is None:
        from libp2p.crypto.ed25519 import create_new_key_pair

        keypair = create_new_key_pair()
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    host = build_host(keypair, listen)
    async with host.run(listen_addrs=listen):
        yield GatewayClient(net, host, keypair)


def hypercorn_config(bind: str):
    from hypercorn.config import Config

    cfg = Config()
    cfg.bind = [bind]
    cfg.accesslog = None
    cfg.errorlog = logging.getLogger("hypercorn.error")
    cfg.graceful_timeout = 2.0
    cfg.keep_alive_timeout = 30.0
    return cfg


async def serve_asgi(app, bind: str, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve an ASGI app with hypercorn on the running trio loop; started() gets the bound URLs."""
    from hypercorn.trio import serve

    await serve(app, hypercorn_config(bind), mode="asgi", task_status=task_status)


async def serve_gateway(net: NetworkConfig, config: GatewayConfig | None = None, bind: str = "127.0.0.1:31415",
                        *, keypair=None, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run until cancelled. `nursery.start(serve_gateway, ...)` returns (gateway, [bound URLs])."""
    config = config or GatewayConfig()
    async with open_gateway_client(net, keypair) as client:
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
            urls = await nursery.start(serve_asgi, gateway, bind)
            logger.info("gateway on %s (publisher %s, aggregator %s)", " ".join(urls),
                        "on" if config.publisher else "off", "on" if config.aggregator else "off")
            task_status.started((gateway, urls))
