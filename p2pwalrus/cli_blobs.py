"""The CLI's blob commands: `blob-id`, `store`, `read`, `blob-status`, `extend` and `delete`
(files larger than one blob: cli_files.py). Start-up stays light: the client loads inside a command.
"""

from __future__ import annotations

import json
import os
import sys

import click

from .cli_daemon_paths import find_daemon, read_via_daemon, store_via_daemon
from .cli_common import (
    BlobIdCommand, json_network_options, network_option, note_interrupt, parse_blob_id, parse_size, read_padded,
    resolve_network, store_progress, with_client, write_atomically,
)


@click.command("blob-id")
@click.argument("path")
@click.option("--shards", "-n", type=int, default=None, help="Shard count (default: the network's).")
@json_network_options()
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


@click.command("store")
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
    from .cli_files import store_large, wants_chunks

    net = resolve_network(ctx, network)
    chunk_bytes = parse_size(chunk_size) if chunk_size else None
    if dry_run:
        from .cli_pay import dry_run as show_cost

        return show_cost(net, path, epochs, chunk_bytes, as_json)
    if wants_chunks(path, net.n_shards, chunk_bytes):
        return store_large(net, path, epochs=epochs, deletable=deletable, force=force, as_json=as_json,
                           chunk_size=chunk_bytes)
    if os.path.isfile(path) and os.access(path, os.R_OK) and (link := find_daemon(net)) is not None:
        return store_via_daemon(link, net, path, epochs=epochs, deletable=deletable, force=force, as_json=as_json)
    from .client.encoding import BackgroundEncoding
    from .core.blob_id import blob_id_to_str

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


@click.command("read", cls=BlobIdCommand)
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

    if not strict and not raw and (link := find_daemon(net)) is not None:
        return read_via_daemon(link, raw_id, out)
    if out is None:
        read_out(net, raw_id, sys.stdout.buffer, strict=strict, raw=raw)
        sys.stdout.buffer.flush()
        return
    # Atomically: a failed read never leaves a partial file behind, and an output that
    # cannot be written fails before the download.
    size = write_atomically(out, lambda fh: read_out(net, raw_id, fh, strict=strict, raw=raw))
    click.echo(f"wrote {size} bytes to {out}", err=True)


@click.command("blob-status", cls=BlobIdCommand)
@click.argument("blob_id")
@json_network_options()
def blob_status_cmd(ctx, blob_id, as_json, network):
    """Is BLOB_ID certified, and how many shards' holders store it right now?"""
    from .cli_files import blob_status

    blob_status(resolve_network(ctx, network), parse_blob_id(blob_id), as_json)


@click.command("extend", cls=BlobIdCommand)
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


@click.command("delete", cls=BlobIdCommand)
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


COMMANDS = (blob_id_cmd, store_cmd, read_cmd, blob_status_cmd, extend_cmd, delete_cmd)
