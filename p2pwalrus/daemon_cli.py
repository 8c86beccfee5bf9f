"""`p2pwalrus daemon`: this client, kept running for one network, serving the CLI.

It is the gateway's publisher and aggregator (gateway/) on a Unix socket under the client's
directory instead of a TCP port, with the client's own key and wallet journal (stores are
paid as without it) and no cache of decoded blobs (every read is fetched and verified).
The socket's directory is the user's alone (0700), so only this user's commands reach it;
that is why it may also read the file a `store` names itself (GatewayConfig.local_files)
instead of receiving it as a request body.
"""

from __future__ import annotations

import logging
import os
from functools import partial

import click

from .cli_common import client_dir, client_key, fail, network_option, quiet_libp2p, resolve_network, serve_until_stopped

logger = logging.getLogger("p2pwalrus.daemon")


def _claim(path) -> None:
    """Make the socket's directory (the user's only) and take the path: refused while a live
    daemon answers there; a socket left by one that died is removed."""
    from .daemon_link import SOCKET_PATH_MAX, DaemonLink

    if len(os.fsencode(str(path))) > SOCKET_PATH_MAX:
        fail(f"the daemon's socket path {path} is longer than {SOCKET_PATH_MAX} bytes (a Unix socket's limit); "
             "set P2PWALRUS_CLIENT_DIR to a shorter directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    if path.exists() or path.is_symlink():
        link = DaemonLink(path)
        try:
            link.conn.connect()
        except OSError:
            path.unlink(missing_ok=True)
        else:
            link.close()
            fail(f"a daemon already serves this network for this client at {path}")


async def _trim_when_idle(every: float = 5.0) -> None:
    """Give back the memory a burst of stores and reads left in the heap and in the encoder's
    scratch buffers once the daemon has been idle a while (malloc_tuning.DAEMON keeps it meanwhile)."""
    import time

    import trio

    from .core import scratch
    from .malloc_tuning import IdleTrim, trim

    def give_back() -> None:
        scratch.POOL.clear()
        scratch.READS.clear()
        trim()

    when = IdleTrim()
    while True:
        if when.due(time.monotonic(), time.process_time()):
            await trio.to_thread.run_sync(give_back)
        await trio.sleep(every)


@click.command("daemon")
@network_option
@click.pass_context
def daemon_cmd(ctx, network):
    """Keep this client running for the network, so that store and read start in ~0.1 s.

    While it runs, `p2pwalrus store` (a file of one blob) and `read` hand their work to it
    over a Unix socket under P2PWALRUS_CLIENT_DIR instead of loading the network stack,
    dialling the nodes and pulling the membership each time. Stores are paid from this
    client's key, as without it. Without a daemon, or with P2PWALRUS_DAEMON=off, every
    command works as before on its own. Stop it with Ctrl-C.
    """
    import signal

    import trio

    from .daemon_link import daemon_socket
    from .gateway.app import GatewayConfig
    from .gateway.server import serve_gateway

    quiet_libp2p()
    net = resolve_network(ctx, network)
    where = client_dir()
    path = daemon_socket(net, where)
    _claim(path)
    key = client_key()
    # No cache: a read right after a store fetches from the nodes, as a direct read does.
    config = GatewayConfig(cache_bytes=0, max_connections=64, local_files=True)
    if (ctx.obj or {}).get("verbose", 0) == 0:
        logging.getLogger("p2pwalrus").setLevel(logging.WARNING)

    async def run():
        sig = None
        try:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async with trio.open_nursery() as nursery:
                    gateway, _ = await nursery.start(partial(serve_gateway, net, config, f"unix:{path}",
                                                             keypair=key, wallet_dir=where))
                    os.chmod(path, 0o600)
                    click.echo(f"daemon for network {net.name!r} at {path} ({len(gateway.client.records)} live nodes; "
                               f"account {gateway.client.peer_id}); store and read go through it", err=True)
                    nursery.start_soon(_trim_when_idle)
                    async for sig in signals:
                        nursery.cancel_scope.cancel()
                        break
        finally:
            path.unlink(missing_ok=True)
        click.echo("daemon stopped", err=True)
        return sig

    serve_until_stopped(run)
