"""The `p2pwalrus` command: run a storage node, store and read blobs, inspect the network.

Each command is a thin layer over a library function; heavy imports (libp2p) happen
only in the commands that talk to the network, so `blob-id` and `--help` start fast.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path

import click

from . import __version__
from . import cli_common
from .cli_common import (
    NETWORK_HELP,
    fail,
    network_option,
    note_interrupt,
    parse_blob_id,
    parse_size,
    quiet_libp2p,
    read_padded,
    resolve_network,
    setup_logging,
    store_progress,
    with_client,
    write_atomically,
)
from .errors import P2PWalrusError
from .core import thresholds

def _user_error(exc: BaseException) -> P2PWalrusError | None:
    """The P2PWalrusError inside `exc`, looking through trio's exception groups."""
    if isinstance(exc, P2PWalrusError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            found = _user_error(sub)
            if found is not None:
                return found
    return None


def _interrupted(exc: BaseException) -> bool:
    """Whether `exc` is a Ctrl-C, perhaps inside trio's exception groups (along with the
    Cancelled and other errors of the tasks it ended)."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_interrupted(sub) for sub in exc.exceptions)
    return False


class _BlobIdCommand(click.Command):
    """A command taking a BLOB_ID, which may begin with '-' (a base64url character): such a
    43-character argument is moved behind '--' so that it is not taken for an option."""

    def parse_args(self, ctx, args):
        import re

        if "--" not in args:
            ids = [a for a in args if re.fullmatch(r"-[A-Za-z0-9_-]{42}", a)]
            if len(ids) == 1:
                args = [a for a in args if a != ids[0]] + ["--", ids[0]]
        return super().parse_args(ctx, args)


class _Cli(click.Group):
    def resolve_command(self, ctx, args):
        name, cmd, rest = super().resolve_command(ctx, args)
        if name == "store":  # from its very start: a store interrupted early certified nothing
            note_interrupt("interrupted; nothing was certified")
        return name, cmd, rest

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BaseException as exc:
            if _interrupted(exc):
                fail(cli_common.interrupt_note(), 130)  # one line, exit 128 + SIGINT, no traceback
            err = _user_error(exc)
            if err is None:
                raise
            fail(str(err))


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--network", default=None, metavar="NAME_OR_FILE", help=NETWORK_HELP)
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.version_option(__version__, prog_name="p2pwalrus")
@click.pass_context
def main(ctx: click.Context, network: str | None, verbose: int) -> None:
    """p2pwalrus: a decentralized blob store, Walrus-compatible, on a peer-to-peer network.

    Quick start: `netlab demo` runs a local testnet and stores a file in it.
    """
    ctx.obj = {"network": network, "verbose": verbose}
    # Hand the GIL over every 1 ms, not every 5 ms (Python's default). The encoder, the
    # verifiers and the hashing release the GIL for each codec call and each symbol they
    # hash, and waited up to the switch interval to get it back each time while another
    # thread ran Python (imports, the event loop's framing); so do a node's verifications
    # next to its receiving loop, and a read's next to its fetching. A 32 MiB encode beside
    # a busy Python thread, machine at load 7-8, 7 runs each, median (range): 5 ms 0.92 s
    # (0.64-1.19), 1 ms 0.52 s (0.40-0.98), 0.2 ms 0.60 s (0.42-1.00): finer hand-overs
    # wait for the scheduler more often once the cores are oversubscribed.
    sys.setswitchinterval(_SWITCH_INTERVAL)
    if ctx.invoked_subcommand not in _SERVER_COMMANDS:
        # Every other command is a client process that talks to p2pwalrus nodes only: libp2p
        # loads without TLS, RSA and the rest (p2p/patches/lean_import.py), unless the user chose
        # otherwise. Set here, before any command imports the client: `read` imported it
        # (client/chunked.py) before _with_client set this, and loaded pycryptodome's RSA,
        # cffi's C parser and x509 on every read (~10% of a 1 MiB read's wall clock).
        import os

        os.environ.setdefault("P2PWALRUS_LEAN_LIBP2P", "client")
    setup_logging(verbose)


_SWITCH_INTERVAL = 0.001  # seconds


# Commands that run a long-lived host other libp2p peers may reach (TLS, RSA keys): libp2p loads
# with everything but the transports we never build.
_SERVER_COMMANDS = frozenset({"node", "gateway"})


# --- commands -----------------------------------------------------------------------


@main.command("blob-id")
@click.argument("path")
@click.option("--shards", "-n", type=int, default=None, help="Shard count (default: the network's).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@network_option
@click.pass_context
def blob_id_cmd(ctx, path, shards, as_json, network):
    """Compute the Walrus blob ID of PATH ('-' for standard input) without storing it."""
    from .core import rs2
    from .core.blob_id import blob_id_to_str

    if shards is None:
        shards = resolve_network(ctx, network).n_shards
    data, length = read_padded(path, shards)
    meta = rs2.compute_metadata(data, shards, length=length)
    bid = blob_id_to_str(meta.blob_id())
    if as_json:
        click.echo(json.dumps({"blob_id": bid, "unencoded_length": length, "n_shards": shards,
                               "symbol_size": meta.symbol_size}))
    else:
        click.echo(bid)


@main.command("node")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Identity, slivers and index (default: the user data dir / NETWORK).")
@click.option("--listen", multiple=True, default=None, metavar="MULTIADDR",
              help="Listen address (default /ip4/127.0.0.1/tcp/0); repeatable.")
@click.option("--capacity", default=None, metavar="BYTES", help="Storage capacity, e.g. 10G (default: unlimited).")
@click.option("--metrics-addr", default=None, metavar="HOST:PORT", help="Serve Prometheus metrics here.")
@click.option("--vote-storage-price", default=None, metavar="AMOUNT",
              help="Vote this storage price per 1 MiB unit of encoded size per epoch (e.g. 1000FROST); "
                   "the network takes the quorum-below price of the committee's votes at each epoch change.")
@click.option("--vote-write-price", default=None, metavar="AMOUNT", help="Vote this write price per 1 MiB unit.")
@click.option("--vote-capacity", default=None, metavar="BYTES", help="Vote (announce) this storage capacity.")
@network_option
@click.pass_context
def node_cmd(ctx, data_dir, listen, capacity, metrics_addr, vote_storage_price, vote_write_price, vote_capacity,
             network):
    """Run a storage node until SIGINT or SIGTERM.

    The --vote-* options sign this node's governance vote and keep it in the data dir
    (`p2pwalrus vote` changes it while the node runs); a price not given keeps the one
    voted before, or the genesis price."""
    import trio

    from .node.service import StorageNode, run_node_until_signal

    quiet_libp2p()
    net = resolve_network(ctx, network)
    if data_dir is None:
        import platformdirs

        data_dir = Path(platformdirs.user_data_dir("p2pwalrus")) / net.name
    try:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise P2PWalrusError(f"cannot create the data dir {data_dir}: {exc.strerror or exc}; "
                             "pass --data-dir a directory you can write") from None
    if ctx.obj["verbose"] == 0:
        logging.getLogger("p2pwalrus").setLevel(logging.INFO)
    if vote_storage_price is not None or vote_write_price is not None or vote_capacity is not None:
        from .cli_pay import cast_vote

        cast_vote(net, Path(data_dir), vote_storage_price, vote_write_price, vote_capacity, ())
    node = StorageNode(net, Path(data_dir), list(listen) or None, parse_size(capacity) if capacity else None)
    if metrics_addr:
        from .node.metrics import install_node_metrics

        install_node_metrics(node, metrics_addr)
    if trio.run(run_node_until_signal, node) == signal.SIGINT:
        sys.exit(130)  # Ctrl-C, as every command: 128 + SIGINT (SIGTERM, a service stop, is 0)


@main.command("store")
@click.argument("path")
@click.option("--epochs", "-e", type=click.IntRange(1), default=1, show_default=True,
              help="Number of epochs to store the blob for.")
@click.option("--deletable", is_flag=True, help="Allow the storing key to delete the blob early.")
@click.option("--force", is_flag=True, help="Upload even if the blob is already certified.")
@click.option("--json", "as_json", is_flag=True, help="Print a Walrus-like JSON object.")
@click.option("--chunk-size", default=None, metavar="BYTES",
              help="Store a larger file as chunks of this size (default: the largest blob).")
@click.option("--dry-run", is_flag=True, help="Print the cost (and your balance) only: nothing is uploaded or paid.")
@network_option
@click.pass_context
def store_cmd(ctx, path, epochs, deletable, force, as_json, chunk_size, dry_run, network):
    """Encode PATH ('-' for standard input), store it on the network, print its blob ID.

    On a network with prices the store is paid from this client's WAL account (`p2pwalrus
    wallet`): the cost (storage price x 1 MiB units of encoded size x epochs, plus the write
    price x units) is printed before it is paid, and a store the balance does not cover is
    refused before anything is uploaded. `--dry-run` shows the cost only.

    A file larger than one blob is stored as chunks, each a blob, and a manifest naming
    them: the ID printed is the manifest's, and `read` gives back the whole file. Run
    again after it stopped, such a store uploads only the chunks not yet certified.
    The blob ID is alone on the last line of the output.
    """
    from .core.blob_id import blob_id_to_str

    from .client.encoding import BackgroundEncoding
    from .cli_files import store_large, wants_chunks

    net = resolve_network(ctx, network)
    chunk_bytes = parse_size(chunk_size) if chunk_size else None
    if dry_run:
        from .cli_pay import dry_run as show_cost

        return show_cost(net, path, epochs, chunk_bytes, as_json)
    if wants_chunks(path, net.n_shards, chunk_bytes):
        return store_large(net, path, epochs=epochs, deletable=deletable, force=force, as_json=as_json,
                           chunk_size=chunk_bytes)
    data, length = read_padded(path, net.n_shards)
    # Encoding starts now, in its own thread: it overlaps loading libp2p, dialling and the membership pull.
    encoding = BackgroundEncoding(data, net.n_shards, length)

    async def run(client):
        return await client.store(data, epochs=epochs, deletable=deletable, force=force, progress=store_progress(),
                                  length=length, encoding=encoding)

    note_interrupt("interrupted; nothing was certified")
    result = with_client(net, run)
    note_interrupt(f"interrupted; {blob_id_to_str(result.blob_id)} is certified")
    if as_json:
        from .gateway.walrus_json import blob_store_json

        click.echo(json.dumps(blob_store_json(result), indent=2))
        return
    if result.already_certified:
        click.echo(f"already certified until epoch {result.certificate.end_epoch}", err=True)
    else:
        click.echo(
            f"stored {length} bytes on {result.shards_confirmed}/{net.n_shards} shards, "
            f"certified at epoch {result.certificate.epoch} until {result.certificate.end_epoch} "
            f"(encode {result.encode_seconds:.2f} s, {result.encode_waited:.2f} s of it waited for, "
            f"upload {result.upload_seconds:.2f} s; nodes verify "
            f"{result.node_verify_seconds:.2f} s, write {result.node_write_seconds:.2f} s, summed)",
            err=True,
        )
    click.echo(blob_id_to_str(result.blob_id))


@main.command("read", cls=_BlobIdCommand)
@click.argument("blob_id")
@click.option("-o", "--out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write here (default: standard output).")
@click.option("--strict", is_flag=True, help="Re-encode the blob and check its blob ID (slower).")
@click.option("--raw", is_flag=True, help="A manifest's own bytes, not the file it describes.")
@network_option
@click.pass_context
def read_cmd(ctx, blob_id, out, strict, raw, network):
    """Fetch BLOB_ID from the network, verify it and write its bytes.

    A chunked file (its manifest's ID) is streamed chunk by chunk, each verified."""
    from .cli_files import read_out

    net = resolve_network(ctx, network)
    raw_id = parse_blob_id(blob_id)
    note_interrupt("interrupted; nothing was written" if out else "interrupted")

    if out is None:
        read_out(net, raw_id, sys.stdout.buffer, strict=strict, raw=raw)
        sys.stdout.buffer.flush()
        return
    # Atomically: a failed read never leaves a partial file behind, and an output that
    # cannot be written fails before the download.
    size = write_atomically(out, lambda fh: read_out(net, raw_id, fh, strict=strict, raw=raw))
    click.echo(f"wrote {size} bytes to {out}", err=True)


@main.command("blob-status", cls=_BlobIdCommand)
@click.argument("blob_id")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@network_option
@click.pass_context
def blob_status_cmd(ctx, blob_id, as_json, network):
    """Is BLOB_ID certified, and how many shards' holders store it right now?"""
    from .cli_files import blob_status

    blob_status(resolve_network(ctx, network), parse_blob_id(blob_id), as_json)


@main.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@network_option
@click.pass_context
def info_cmd(ctx, as_json, network):
    """Network parameters, live nodes, shard map summary and the current epoch."""
    net = resolve_network(ctx, network)

    async def run(client):
        smap = client.shard_map
        load = smap.load()
        quote = await client.quote(0, 1) if net.genesis is not None else None
        return {
            "prices": {"storage_price_per_unit": quote.cost.storage_price if quote else 0,
                       "write_price_per_unit": quote.cost.write_price if quote else 0, "unit_bytes": 1 << 20,
                       "ledger": net.genesis is not None},
            "network": net.name,
            "n_shards": net.n_shards,
            "f": thresholds.max_faulty(net.n_shards),
            "epoch": net.current_epoch(),
            "epoch_length": net.epoch_length,
            "live_nodes": len(client.live_peers()),
            "shard_map": {"digest": smap.digest().hex(), "max_load": smap.max_load,
                          "min_load": min(load.values()), "decodable_alone": smap.decodable_alone},
            "nodes": {p: {"shards": list(smap.shards_of(p)), "addrs": list(client.records[p].record.addrs)}
                      for p in client.live_peers()},
            # A network with a genesis: shards are the decided epoch state's (`p2pwalrus committee`).
            "decided_epoch": client.epochs.current.epoch if client.epochs is not None else None,
        }

    info = with_client(net, run)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"network {info['network']}: {info['n_shards']} shards (f={info['f']}), epoch {info['epoch']} "
               f"({info['epoch_length']:.0f} s), {info['live_nodes']} live nodes")
    sm = info["shard_map"]
    click.echo(f"shard map {sm['digest'][:16]}: {sm['min_load']}..{sm['max_load']} shards per node"
               + (f", as decided for epoch {info['decided_epoch']} (p2pwalrus committee)"
                  if info["decided_epoch"] is not None else ""))
    from .core.wal.amounts import format_amount

    pr = info["prices"]
    click.echo(f"prices: {format_amount(pr['storage_price_per_unit'])} per 1 MiB unit of encoded size per epoch, "
               f"{format_amount(pr['write_price_per_unit'])} per unit written"
               + ("" if pr["ledger"] else " (no ledger: storing is free)"))
    for peer, node in info["nodes"].items():
        click.echo(f"  {peer}  shards {node['shards']}")


@main.command("health")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@network_option
@click.pass_context
def health_cmd(ctx, as_json, network):
    """Ask every live node for its status; exit 1 if any is unreachable or disagrees on the map."""
    net = resolve_network(ctx, network)

    async def run(client):
        return client.shard_map.digest().hex(), await client.node_infos()

    digest, infos = with_client(net, run)
    rows = []
    healthy = True
    for peer, info in sorted(infos.items()):
        ok = "error" not in info and info.get("map_digest") == digest
        healthy &= ok
        rows.append({"peer_id": peer, "ok": ok, "live": len(info.get("live", [])), "shards": info.get("shards"),
                     "blobs": info.get("blobs"), "error": info.get("error")})
    if as_json:
        click.echo(json.dumps({"healthy": healthy, "nodes": rows}, indent=2))
    else:
        for r in rows:
            state = "ok" if r["ok"] else f"PROBLEM {r['error'] or 'shard map differs'}"
            click.echo(f"{r['peer_id']}  {state}  live={r['live']} blobs={r['blobs']}")
        click.echo("healthy" if healthy else "unhealthy")
    sys.exit(0 if healthy else 1)


@main.command("list-blobs")
@click.option("--node", "node_id", default=None, metavar="PEER_ID", help="Which node (default: every live node).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@network_option
@click.pass_context
def list_blobs_cmd(ctx, node_id, as_json, network):
    """The blobs that a node holds, with their shards and state."""
    net = resolve_network(ctx, network)

    from .core.messages import ListBlobsReply, ListBlobsRequest

    async def run(client):
        peers = [node_id] if node_id else client.live_peers()
        results = await client.gather(peers, lambda p: client.request(p, ListBlobsRequest()))
        return {p: (r.to_json() if isinstance(r, ListBlobsReply) else {"error": repr(r)}) for p, r in results.items()}

    listing = with_client(net, run)
    if as_json:
        click.echo(json.dumps(listing, indent=2))
        return
    for peer, reply in sorted(listing.items()):
        click.echo(f"{peer}:" + (f" {reply['error']}" if "error" in reply else ""))
        for b in reply.get("blobs", []):
            click.echo(f"  {b['blob_id']}  shards {b['shards']}  end_epoch {b.get('end_epoch')}"
                       + ("  certified" if b.get("certified") else "") + ("  INVALID" if b.get("invalid") else ""))


@main.command("extend", cls=_BlobIdCommand)
@click.argument("blob_id")
@click.option("--epochs", "-e", type=click.IntRange(1), required=True, help="New life, in epochs from now.")
@network_option
@click.pass_context
def extend_cmd(ctx, blob_id, epochs, network):
    """Lengthen BLOB_ID's storage: its holders sign the new end epoch.

    On a network with prices the added epochs are paid first (storage price x 1 MiB units of
    encoded size x added epochs; no write price), from this client's WAL account."""
    net = resolve_network(ctx, network)
    raw_id = parse_blob_id(blob_id)
    note_interrupt("interrupted; the blob may be extended on some nodes (run extend again)")
    from .client.chunked import extend

    cert = with_client(net, lambda c: extend(c, raw_id, epochs))  # a chunked file's chunks too
    click.echo(f"{blob_id} now stored until epoch {cert.end_epoch}")


@main.command("delete", cls=_BlobIdCommand)
@click.argument("blob_id")
@click.option("--yes", is_flag=True,
              help="Do not ask for confirmation. Without a terminal on standard input (a script, a pipe, CI) "
                   "it is never asked: the blob is deleted at once.")
@network_option
@click.pass_context
def delete_cmd(ctx, blob_id, yes, network):
    """Delete BLOB_ID, if it was stored as deletable with this client's key.

    Deleting frees nothing already paid: as in Walrus, the WAL paid for its storage stays
    in the storage fund and goes to the holders as the epochs pass.

    Asks for confirmation first when standard input is a terminal; from a script or a
    pipe it does not ask and deletes at once (as with --yes).
    """
    net = resolve_network(ctx, network)
    raw_id = parse_blob_id(blob_id)
    if not yes and sys.stdin.isatty():
        click.confirm(f"Delete {blob_id} from every node?", abort=True)
    note_interrupt("interrupted; the blob may be deleted on some nodes (run delete again)")
    from .client.chunked import delete

    count = with_client(net, lambda c: delete(c, raw_id))  # a chunked file's chunks too
    click.echo(f"deleted on {count} node(s)")


from .gateway.cli import gateway_cmd  # noqa: E402  (imports its heavy parts lazily)

main.add_command(gateway_cmd)

from .quilt_cli import COMMANDS as _QUILT_COMMANDS  # noqa: E402  (store-quilt, read-quilt, publish)

for _command in _QUILT_COMMANDS:
    main.add_command(_command)

from .cli_wallet import COMMANDS as _WALLET_COMMANDS  # noqa: E402  (wallet, stake, unstake)

for _command in _WALLET_COMMANDS:
    main.add_command(_command)

from .cli_pay import COMMANDS as _PAY_COMMANDS  # noqa: E402  (price, vote)

for _command in _PAY_COMMANDS:
    main.add_command(_command)

from .cli_committee import COMMANDS as _COMMITTEE_COMMANDS  # noqa: E402  (committee)

for _command in _COMMITTEE_COMMANDS:
    main.add_command(_command)


def _exit_code(code) -> int:
    """The status `sys.exit(code)` would end the process with (printing a message, as it does)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def entry(args=None) -> None:
    """The `p2pwalrus` program (console script and `python -m p2pwalrus`).

    Runs the click group; after a command that used the network, flushes standard output
    and error and leaves with os._exit, so the process does not spend 0.1-0.3 s
    tearing down libp2p's modules and threads after its work is done. Everything a
    command writes is written (and `read -o` fsyncs its file) before it returns.
    Other commands, and errors that are not exits, end the ordinary way.
    """
    import os

    try:
        main.main(args=args)
        code = 0  # standalone mode always raises SystemExit; this is only for safety
    except SystemExit as exc:
        if not cli_common.fast_exit:
            raise
        code = _exit_code(exc.code)
    if not cli_common.fast_exit:
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # e.g. a closed pipe: the output is lost, say so with the status
            code = code or 1
    os._exit(code)


if __name__ == "__main__":
    entry()
