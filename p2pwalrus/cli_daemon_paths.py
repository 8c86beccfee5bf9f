"""`store` and `read` through a running `p2pwalrus daemon` (daemon_link.py): what they print
and how they fail, the same as without it. Light at import: no network stack."""

from __future__ import annotations

import json
import sys

import click

from .cli_common import client_dir, fail, note_interrupt, write_atomically


def find_daemon(net):
    from .daemon_link import DaemonLink

    return DaemonLink.find(net, client_dir())


def _cli_store_json(body: dict) -> dict:
    """The CLI's --json shape (gateway/walrus_json.blob_store_json) from the publisher's body."""
    if "alreadyCertified" in body:
        done = body["alreadyCertified"]
        return {"alreadyCertified": {"blobId": done["blobId"], "endEpoch": done["endEpoch"]}}
    made = body["newlyCreated"]
    obj = made["blobObject"]
    out = {"newlyCreated": {"blobObject": {
        "blobId": obj["blobId"], "size": obj["size"], "encodingType": obj["encodingType"],
        "certifiedEpoch": obj["certifiedEpoch"], "deletable": obj["deletable"],
        "storage": {k: obj["storage"][k] for k in ("startEpoch", "endEpoch", "storageSize")},
    }, "cost": made.get("cost", 0)}}
    if "file" in body:
        out["file"] = body["file"]
    return out


def store_via_daemon(link, net, path: str, *, epochs: int, deletable: bool, force: bool, as_json: bool) -> None:
    from .daemon_link import DaemonError

    note_interrupt("interrupted; the daemon may still certify the blob (check with blob-status)")
    try:
        body, detail = link.store(path, epochs=epochs, deletable=deletable, force=force)
    except DaemonError as exc:
        fail(str(exc))
    finally:
        link.close()
    done = _cli_store_json(body)
    blob_id = (done.get("alreadyCertified") or done["newlyCreated"]["blobObject"])["blobId"]
    note_interrupt(f"interrupted; {blob_id} is certified")
    if as_json:
        click.echo(json.dumps(done, indent=2))
        return
    if "alreadyCertified" in done:
        click.echo(f"already certified until epoch {done['alreadyCertified']['endEpoch']}", err=True)
    else:
        obj = done["newlyCreated"]["blobObject"]
        cost = done["newlyCreated"]["cost"]
        if cost:
            from .core.wal.amounts import format_amount

            click.echo(f"paid {format_amount(cost)}", err=True)
        d = detail

        def fig(name):
            return f"{d[name]:.2f}" if isinstance(d.get(name), (int, float)) else "?"

        click.echo(
            f"stored {obj['size']} bytes on {d.get('shards_confirmed', '?')}/{d.get('n_shards', net.n_shards)} shards, "
            f"certified at epoch {obj['certifiedEpoch']} until {obj['storage']['endEpoch']} through the daemon "
            f"(encode {fig('encode_seconds')} s, upload {fig('upload_seconds')} s; nodes verify "
            f"{fig('node_verify_seconds')} s, write {fig('node_write_seconds')} s, summed)",
            err=True,
        )
    click.echo(blob_id)


def read_via_daemon(link, raw_id: bytes, out: str | None) -> None:
    from .core.blob_id import blob_id_to_str
    from .daemon_link import DaemonError

    text = blob_id_to_str(raw_id)
    try:
        if out is None:
            link.read_into(text, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return
        size = write_atomically(out, lambda _fh, tmp: link.read_to_file(text, tmp), with_path=True)
    except DaemonError as exc:
        fail(str(exc))
    except BrokenPipeError:
        fail("the output was closed before the blob was written")
    finally:
        link.close()
    click.echo(f"wrote {size} bytes to {out}", err=True)
