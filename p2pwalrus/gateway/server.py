"""Run a gateway: one client, a membership refresh loop and hypercorn's trio worker, on one trio loop."""

from __future__ import annotations

from pathlib import Path

import logging
from functools import partial

import trio

from contextlib import asynccontextmanager

from ..config import NetworkConfig
from ..asgi_serve import busy_reply, serve_asgi
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


def _busy_reply() -> bytes:
    """The 503 over the connection cap, its body in Walrus's error shape."""
    import json

    from .asgi import error_body

    body = json.dumps(error_body(503, "too many open connections; retry later")).encode()
    return busy_reply(body, "application/json")


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
                                               read_timeout=config.read_timeout, busy=_busy_reply()))
            logger.info("gateway on %s (publisher %s, aggregator %s)", " ".join(urls),
                        "on" if config.publisher else "off", "on" if config.aggregator else "off")
            task_status.started((gateway, urls))
