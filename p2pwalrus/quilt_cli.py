"""CLI commands for quilts and sites: `store-quilt`, `read-quilt`, `publish` (registered in cli.py).

Thin layers over client/quilts.py and client/site.py, like every other command.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .cli_common import (
    json_network_options,
    fail,
    network_option,
    note_interrupt,
    parse_blob_id,
    resolve_network,
    with_client,
    write_atomically,
)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        fail(f"{path}: no such file; check the path")
    except IsADirectoryError:
        fail(f"{path} is a directory; pass --dir {path} to store the files under it")
    except PermissionError:
        fail(f"{path}: permission denied; store files you can read")


@click.command("store-quilt")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=True))
@click.option("--dir", "directory", type=click.Path(file_okay=False), default=None,
              help="Store every file under this directory (identifiers: paths relative to it).")
@click.option("--epochs", "-e", type=click.IntRange(1), default=1, show_default=True,
              help="Number of epochs to store the quilt for.")
@click.option("--deletable", is_flag=True, help="Allow the storing key to delete the quilt early.")
@click.option("--json", "as_json", is_flag=True, help="Print Walrus's quilt store response as JSON.")
@network_option
@click.pass_context
def store_quilt_cmd(ctx, files, directory, epochs, deletable, as_json, network):
    """Store small FILES (or those under --dir) as one quilt, in Walrus's QuiltV1 layout.

    Prints the quilt ID on the first line, then one line per file: its identifier (the
    file's name; with --dir, its path under DIR) and its patch ID, tab-separated. Each
    file reads back alone with `read-quilt QUILT_ID IDENTIFIER` or `read-quilt PATCH_ID`.
    """
    from .client.quilts import store_quilt
    from .client.site import SiteError, scan_directory
    from .core import quilt as q
    from .core.blob_id import blob_id_to_str

    if bool(files) == bool(directory):
        fail("pass either FILES or --dir DIR (the files to put in the quilt)")
    net = resolve_network(ctx, network)
    if directory:
        try:
            listing = scan_directory(Path(directory))
        except SiteError as exc:
            fail(str(exc))
        named = [(rel, full) for rel, full in listing]
    else:
        named = [(Path(f).name, Path(f)) for f in files]
    most = q.max_patches(net.n_shards)
    if len(named) > most:
        fail(f"{len(named)} files do not fit one quilt: at most {most} at {net.n_shards} shards "
              f"(one column each); store fewer, or `publish` the directory (it makes as many quilts as needed)")
    blobs = [q.QuiltBlob(name, _read_file(path)) for name, path in named]

    async def run(client):
        return await store_quilt(client, blobs, epochs=epochs, deletable=deletable)

    note_interrupt("interrupted; nothing was certified")
    stored = with_client(net, run)
    quilt_id = blob_id_to_str(stored.quilt_id)
    note_interrupt(f"interrupted; quilt {quilt_id} is certified")
    if as_json:
        from .gateway.walrus_json import quilt_store_json

        click.echo(json.dumps(quilt_store_json(stored), indent=2))
        return
    state = "already certified" if stored.result.already_certified else "stored"
    click.echo(f"{state} {len(blobs)} files in one quilt of {stored.encoded_size} bytes, "
               f"until epoch {stored.result.certificate.end_epoch}", err=True)
    click.echo(quilt_id)
    for patch in stored.index.patches:
        click.echo(f"{patch.identifier}\t{patch.patch_id(stored.quilt_id)}")


class _QuiltIdCommand(click.Command):
    """Quilt and patch IDs may begin with '-' (a base64url character): positionals are moved
    behind '--', in their order, when one of them does, so that none is taken for an option."""

    VALUE_OPTIONS = ("-o", "--out", "--network")

    def parse_args(self, ctx, args):
        import re

        if "--" not in args and any(re.fullmatch(r"-[A-Za-z0-9_-]{42}|-[A-Za-z0-9_-]{49}", a) for a in args):
            options, positionals, i = [], [], 0
            while i < len(args):
                a = args[i]
                if a in self.VALUE_OPTIONS and i + 1 < len(args):
                    options += [a, args[i + 1]]
                    i += 2
                    continue
                is_id = re.fullmatch(r"-[A-Za-z0-9_-]{42}|-[A-Za-z0-9_-]{49}", a)
                (positionals if is_id or not a.startswith("-") else options).append(a)
                i += 1
            args = options + ["--"] + positionals
        return super().parse_args(ctx, args)


@click.command("read-quilt", cls=_QuiltIdCommand)
@click.argument("quilt_id")
@click.argument("identifier", required=False)
@click.option("-o", "--out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write here (default: standard output).")
@network_option
@click.pass_context
def read_quilt_cmd(ctx, quilt_id, identifier, out, network):
    """Read one file of a quilt: QUILT_ID IDENTIFIER, or a PATCH_ID alone.

    Only the file's own columns are fetched (and the quilt's index for an identifier),
    each verified against the quilt's metadata.
    """
    from .client.quilts import QuiltReader
    from .core import quilt as q

    net = resolve_network(ctx, network)
    if identifier is None:
        try:
            patch_id = q.QuiltPatchId.parse(quilt_id)
        except q.InvalidPatchIdError as exc:
            if len(quilt_id.strip()) == 43:
                fail(f"{quilt_id} is a quilt ID: pass the IDENTIFIER of a file in it too "
                      f"(`list-quilt {quilt_id}` lists them)")
            fail(f"{exc}; pass QUILT_ID IDENTIFIER, or a patch ID alone")

        async def run(client):
            return await QuiltReader(client).read_by_id(patch_id)
    else:
        raw_id = parse_blob_id(quilt_id)

        async def run(client):
            return await QuiltReader(client).read(raw_id, identifier)

    note_interrupt("interrupted; nothing was written" if out else "interrupted")
    if out is None:
        patch = with_client(net, run)
        sys.stdout.buffer.write(patch.data)
        sys.stdout.buffer.flush()
        return

    def write(fh):
        patch = with_client(net, run)
        try:
            fh.write(patch.data)
        except OSError as exc:
            fail(f"cannot write {out}: {exc.strerror or exc}; pass -o a path in a directory you can write")
        return patch

    patch = write_atomically(out, write)  # a failed read leaves no partial file
    click.echo(f"wrote {len(patch.data)} bytes of {patch.identifier!r} to {out}", err=True)


@click.command("list-quilt", cls=_QuiltIdCommand)
@click.argument("quilt_id")
@json_network_options("Print a JSON array.")
def list_quilt_cmd(ctx, quilt_id, as_json, network):
    """The files of a quilt: identifier, patch ID, columns and tags (from its index only)."""
    from .client.quilts import QuiltReader

    net = resolve_network(ctx, network)
    raw_id = parse_blob_id(quilt_id)

    async def run(client):
        return (await QuiltReader(client).index(raw_id))[2]

    index = with_client(net, run)
    rows = [{"identifier": p.identifier, "quiltPatchId": str(p.patch_id(raw_id)), "startIndex": p.start_index,
             "endIndex": p.end_index, "tags": dict(p.tags)} for p in index.patches]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        tags = " ".join(f"{k}={v}" for k, v in row["tags"].items())
        click.echo(f"{row['identifier']}\t{row['quiltPatchId']}\tcolumns {row['startIndex']}..{row['endIndex']}"
                   + (f"\t{tags}" if tags else ""))


@click.command("publish")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--epochs", "-e", type=click.IntRange(1), default=1, show_default=True,
              help="Number of epochs to store the site for.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@network_option
@click.pass_context
def publish_cmd(ctx, directory, epochs, as_json, network):
    """Publish DIRECTORY as a site; print its site ID.

    Small files go in quilts, larger ones in blobs of their own, and a site manifest names
    every path with its content type. A gateway serves it at /sites/SITE_ID/ (index.html
    for a directory). Publishing again after a change uploads only what changed.
    """
    from .client.site import SiteError, publish_directory
    from .core.blob_id import blob_id_to_str

    net = resolve_network(ctx, network)
    if not Path(directory).is_dir():
        fail(f"{directory} is not a directory; pass the directory to publish")

    async def run(client):
        try:
            return await publish_directory(client, Path(directory), epochs=epochs)
        except SiteError as exc:
            fail(str(exc))

    note_interrupt("interrupted; the site was not published (run publish again: what is stored is reused)")
    result = with_client(net, run)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    click.echo(f"published {len(result.manifest.files)} files: {result.quilts_stored} quilts and "
               f"{result.blobs_stored} blobs stored, {result.quilts_reused} quilts and {result.blobs_reused} "
               f"blobs already certified; a gateway serves it at /sites/{blob_id_to_str(result.site_id)}/", err=True)
    click.echo(blob_id_to_str(result.site_id))


COMMANDS = (store_quilt_cmd, read_quilt_cmd, list_quilt_cmd, publish_cmd)
