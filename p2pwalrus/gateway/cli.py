"""`p2pwalrus gateway`: register with `main.add_command(gateway_cmd)` in p2pwalrus/cli.py."""

from __future__ import annotations

import logging
import re
from functools import partial

import click

from ..cli_common import client_dir, fail, network_option, parse_size, quiet_libp2p, resolve_network, serve_until_stopped

TOKEN_ENV = "P2PWALRUS_GATEWAY_TOKEN"


def _parse_rate(text: str | None) -> int | None:
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*(?:/\s*(?:m|min|minute))?\s*", text)
    if not m or int(m.group(1)) < 1:
        fail(f"bad rate limit {text!r}: use N or N/min with N >= 1")
    return int(m.group(1))


def _parse_bind(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        fail(f"bad bind address {text!r}: use HOST:PORT, e.g. 127.0.0.1:31415")
    return text


@click.command("gateway")
@click.option("--bind", "-b", default="127.0.0.1:31415", show_default=True, metavar="HOST:PORT",
              help="Address to serve HTTP on.")
@click.option("--publisher/--no-publisher", default=True, show_default=True, help="Serve PUT /v1/blobs.")
@click.option("--aggregator/--no-aggregator", default=True, show_default=True, help="Serve GET /v1/blobs/{id}.")
@click.option("--max-body", default=None, metavar="BYTES",
              help="Largest PUT body accepted (K, M, G suffixes). Default: no limit; a body larger "
                   "than one blob is streamed and stored as chunks and a manifest.")
@click.option("--auth-token", envvar=TOKEN_ENV, default=None, metavar="TOKEN", show_envvar=True,
              help="Require 'Authorization: Bearer TOKEN' to store.")
@click.option("--rate-limit", default=None, metavar="N/min", help="Stores per minute per client IP.")
@click.option("--read-rate-limit", default=None, metavar="N/min", help="Blob reads per minute per client IP.")
@click.option("--max-connections", default=256, show_default=True, type=click.IntRange(1, 100_000),
              help="Open HTTP connections; more are answered 503.")
@click.option("--cors-writes", "cors_writes", multiple=True, metavar="ORIGIN",
              help="Let a browser on ORIGIN store (repeatable; '*' for any). Reads are open to any origin.")
@click.option("--cache", "cache_size", default="64MiB", show_default=True, metavar="BYTES",
              help="Decoded blobs kept in memory for repeated and range reads.")
@click.option("--wallet-dir", default=None, type=click.Path(file_okay=False), metavar="DIR",
              help="The gateway's WAL account (its key, made on first use, and its payments' journal); PUTs are "
                   "paid from it on a network with prices. Default: P2PWALRUS_CLIENT_DIR/gateway.")
@network_option
@click.pass_context
def gateway_cmd(ctx, bind, publisher, aggregator, max_body, auth_token, rate_limit, read_rate_limit,
                max_connections, cors_writes, cache_size, wallet_dir, network):
    """Serve Walrus's publisher and aggregator HTTP API, /metrics and a dashboard at /.

    On a network with prices a PUT is paid from the gateway's own WAL account (--wallet-dir;
    its address is printed at start: the operator funds it); one it cannot pay is answered
    402 in Walrus's error shape, with the cost and the balance."""
    import trio

    from .app import GatewayConfig
    from .server import serve_gateway

    quiet_libp2p()  # importing libp2p (just now, through .app) reset its loggers

    if not publisher and not aggregator:
        fail("--no-publisher and --no-aggregator together leave nothing to serve")
    net = resolve_network(ctx, network)
    config = GatewayConfig(publisher=publisher, aggregator=aggregator, max_body=parse_size(max_body) if max_body else None,
                           auth_token=auth_token or None, rate_limit=_parse_rate(rate_limit),
                           read_rate_limit=_parse_rate(read_rate_limit), max_connections=max_connections,
                           cors_write_origins=tuple(cors_writes),
                           cache_bytes=parse_size(cache_size))
    if (ctx.obj or {}).get("verbose", 0) == 0:
        logging.getLogger("p2pwalrus").setLevel(logging.INFO)

    async def run():
        import signal

        sig = None
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                gateway, urls = await nursery.start(partial(serve_gateway, net, config, _parse_bind(bind),
                                                            wallet_dir=wallet_dir or client_dir() / "gateway"))
                click.echo(f"gateway for network {net.name!r} on {' '.join(urls)} "
                           f"({len(gateway.client.records)} live nodes); dashboard at {urls[0]}/", err=True)
                if net.genesis is not None:
                    click.echo(f"stores are paid from the gateway's account {gateway.client.peer_id} "
                               f"(prices {gateway.prices_json()['storage_price_per_unit']} FROST per MiB unit per "
                               f"epoch, {gateway.prices_json()['write_price_per_unit']} per unit written)", err=True)
                async for sig in signals:
                    nursery.cancel_scope.cancel()
                    break
        click.echo("gateway stopped", err=True)
        return sig

    serve_until_stopped(run)
