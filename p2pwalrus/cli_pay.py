"""`p2pwalrus price`, `store --dry-run` and the cost shown before a store pays (issue 16).

Prices are the ones the committee's nodes vouch for now (members of more than ``f`` shards'
weight), read with one account query; on a network without a genesis there is no ledger
and storing is free. Thin layers over client/payments.py and core/wal/pricing.py.
"""

from __future__ import annotations

import json
import sys

import click

from .cli_common import network_option, parse_size, read_padded, resolve_network, with_client


def _amount(frost: int) -> str:
    from .core.wal.amounts import format_amount

    return format_amount(frost)


def cost_lines(cost, *, what: str) -> list[str]:
    lines = [f"{what}: {_amount(cost.total)}",
             f"  encoded size {cost.encoded_length} bytes = {cost.units} unit(s) of 1 MiB",
             f"  storage {cost.units} unit(s) x {cost.epochs} epoch(s) x {_amount(cost.storage_price)} = "
             f"{_amount(cost.storage)}"]
    if cost.write_price or cost.write:
        lines.append(f"  write   {cost.units} unit(s) x {_amount(cost.write_price)} = {_amount(cost.write)}")
    return lines


def paying_note(quote) -> None:
    """What a store or extension is about to pay, on standard error, before it pays."""
    click.echo(f"paying {_amount(quote.cost.total)} from {quote.address} (balance {_amount(quote.balance)}): "
               f"{quote.cost.units} unit(s) of 1 MiB encoded x {quote.cost.epochs} epoch(s) x "
               f"{_amount(quote.cost.storage_price)}" + (f" + write {quote.cost.units} x "
                                                         f"{_amount(quote.cost.write_price)}"
                                                         if quote.cost.write_price else ""), err=True)


def quote_for(net, size: int, epochs: int, chunk_size: int | None = None):
    """(Quote or None, total FROST, blobs) for a file of ``size`` bytes; connects to the network
    when it has a ledger."""
    from .client.payments import file_cost
    from .core.manifest import default_chunk_size

    if net.genesis is None:
        return None, 0, 1
    single = chunk_size is None and size <= default_chunk_size(net.n_shards)

    async def run(client):
        return await client.quote(size if single else 0, epochs)  # a chunked file: the prices, summed below

    quote = with_client(net, run)
    if quote is None:
        return None, 0, 1
    if single:
        return quote, quote.cost.total, 1
    total, blobs = file_cost(quote.cost.storage_price, quote.cost.write_price, size, net.n_shards, epochs,
                             chunk_size)
    return quote, total, blobs


def print_quote(net, size: int, epochs: int, quote, total: int, blobs: int, *, as_json: bool,
                extra: dict | None = None, balance: bool = False) -> None:
    obj = {"network": net.name, "size": size, "epochs": epochs, "n_shards": net.n_shards, "blobs": blobs,
           "total": total, **(extra or {})}
    if quote is not None:
        obj.update({k: v for k, v in quote.cost.to_json().items() if blobs == 1 or k in ("storage_price",
                                                                                         "write_price")})
        obj["total"] = total
        if balance:
            obj.update({"address": quote.address, "balance": quote.balance, "enough": quote.balance >= total})
    if as_json:
        click.echo(json.dumps(obj, indent=2))
        return
    what = f"storing {size} bytes for {epochs} epoch(s) on {net.name!r} ({net.n_shards} shards)"
    if quote is None:
        why = "no ledger (no genesis)" if net.genesis is None else "no quorum of the committee answered"
        click.echo(f"{what}: free ({why}; prices are 0)")
        return
    if blobs == 1:
        for line in cost_lines(quote.cost, what=what):
            click.echo(line)
    else:
        click.echo(f"{what}: {_amount(total)} as {blobs} blobs (its chunks and their manifest), at "
                   f"{_amount(quote.cost.storage_price)} per 1 MiB unit per epoch and "
                   f"{_amount(quote.cost.write_price)} per unit written")
    if balance:
        enough = "enough" if quote.balance >= total else "NOT enough"
        click.echo(f"  balance of {quote.address}: {_amount(quote.balance)} ({enough})")


@click.command("price")
@click.argument("size")
@click.option("--epochs", "-e", type=click.IntRange(1), default=1, show_default=True, help="Epochs stored.")
@click.option("--chunk-size", default=None, metavar="BYTES", help="As `store --chunk-size`: the file's chunks.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object (amounts in FROST).")
@network_option
@click.pass_context
def price_cmd(ctx, size, epochs, chunk_size, as_json, network):
    """What storing SIZE bytes (e.g. 1000000, 10M, 2G) for --epochs costs now.

    Walrus's rule: storage_price x units x epochs + write_price x units, where units are
    1 MiB of the encoded size (every shard's slivers and metadata), rounded up. The prices
    are those the committee's nodes vouch for; nothing is paid."""

    net = resolve_network(ctx, network)
    nbytes = parse_size(size)
    chunk = parse_size(chunk_size) if chunk_size else None
    quote, total, blobs = quote_for(net, nbytes, epochs, chunk)
    print_quote(net, nbytes, epochs, quote, total, blobs, as_json=as_json)


def dry_run(net, path: str, epochs: int, chunk_size: int | None, as_json: bool) -> None:
    """`store --dry-run`: the cost (and the blob ID of a one-blob file); nothing uploaded or paid."""
    from pathlib import Path

    from .core import rs2
    from .core.blob_id import blob_id_to_str
    from .core.manifest import default_chunk_size

    if path == "-":
        data = sys.stdin.buffer.read()
        size = len(data)
    else:
        try:
            size = Path(path).stat().st_size
        except OSError as exc:
            from .errors import P2PWalrusError

            raise P2PWalrusError(f"{path}: {exc.strerror or exc}; check the path") from None
        data = None
    extra = {}
    if chunk_size is None and size <= default_chunk_size(net.n_shards):
        buf, length = (data, size) if data is not None else read_padded(path, net.n_shards)
        extra["blob_id"] = blob_id_to_str(rs2.compute_metadata(buf, net.n_shards, length=length).blob_id())
    quote, total, blobs = quote_for(net, size, epochs, chunk_size)
    print_quote(net, size, epochs, quote, total, blobs, as_json=as_json, extra={**extra, "dry_run": True},
                balance=True)
    if not as_json:
        if "blob_id" in extra:
            click.echo(f"  blob ID {extra['blob_id']}")
        click.echo("dry run: nothing was uploaded or paid", err=True)


def cast_vote(net, data_dir, storage_price: str | None, write_price: str | None, capacity: str | None,
              proposals, commission_bps: int | None = None) -> dict:
    """Sign and write the node's vote in ``data_dir`` (values not given: its last vote's, else genesis's)."""
    from .core.wal.amounts import AmountError, parse_amount
    from .errors import P2PWalrusError
    from .p2p.identity import load_or_create_identity, peer_id_of
    from .node.vote_service import read_vote, write_vote

    if net.genesis is None:
        raise P2PWalrusError(f"network {net.name!r} has no genesis, so no ledger and no prices to vote on: use a "
                             "network file with a [genesis] table, such as the one `netlab up` writes")
    last = read_vote(data_dir)
    g = net.genesis

    def amount(text, default):
        if text is None:
            return default
        try:
            return parse_amount(text)
        except AmountError as exc:
            raise P2PWalrusError(str(exc)) from None

    props = dict(last.vote.proposals) if last else {}
    for item in proposals:
        name, sep, value = item.partition("=")
        if not sep or not name.isidentifier() or not value.strip().isdigit():
            raise P2PWalrusError(f"bad proposal {item!r}: use NAME=INTEGER, e.g. max_epochs_ahead=200")
        props[name] = int(value)
    keypair = load_or_create_identity(data_dir)
    signed = write_vote(
        data_dir, keypair, str(peer_id_of(keypair)), g.hash(),
        storage_price=amount(storage_price, last.vote.storage_price if last else g.storage_price),
        write_price=amount(write_price, last.vote.write_price if last else g.write_price),
        capacity=parse_size(capacity) if capacity else (last.vote.capacity if last else 0), proposals=props,
        commission_bps=commission_bps if commission_bps is not None else (last.vote.commission_bps if last else None))
    return signed.vote.to_json()


@click.command("vote")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="The node's data dir (its key signs the vote; default: the user data dir / NETWORK).")
@click.option("--storage-price", default=None, metavar="AMOUNT", help="Storage price per 1 MiB unit per epoch.")
@click.option("--write-price", default=None, metavar="AMOUNT", help="Write price per 1 MiB unit.")
@click.option("--capacity", default=None, metavar="BYTES", help="Storage capacity this node offers.")
@click.option("--propose", "proposals", multiple=True, metavar="NAME=VALUE",
              help="Propose a parameter change (e.g. max_epochs_ahead=200); it takes effect when nodes of "
                   "n - f shards' weight propose the same value. Repeatable.")
@click.option("--commission", "commission_bps", type=click.IntRange(0, 10_000), default=None, metavar="BPS",
              help="This node's commission on its rewards, in basis points (100 = 1%); the rest goes to its stakers.")
@click.option("--show", is_flag=True, help="Print the current vote only.")
@network_option
@click.pass_context
def vote_cmd(ctx, data_dir, storage_price, write_price, capacity, proposals, commission_bps, show, network):
    """Sign this storage node's governance vote: prices, capacity, parameter proposals.

    The vote is kept in the node's data dir; a running node reads it again within seconds and
    serves it to the committee. At each epoch change the price is the quorum-below value of
    the committee's votes, weighted by shards (Walrus's rule): the lowest price that nodes
    holding n - f shards voted for at or below, so f shards voting extremes cannot move it
    outside what the others voted. Values not given keep this node's last vote."""
    from pathlib import Path

    from .node.vote_service import read_vote

    net = resolve_network(ctx, network)
    if data_dir is None:
        import platformdirs

        data_dir = Path(platformdirs.user_data_dir("p2pwalrus")) / net.name
    data_dir = Path(data_dir)
    if show:
        last = read_vote(data_dir)
        click.echo(json.dumps(last.vote.to_json() if last else None, indent=2))
        return
    vote = cast_vote(net, data_dir, storage_price, write_price, capacity, proposals, commission_bps)
    click.echo(f"voted storage price {_amount(vote['storage_price'])}, write price {_amount(vote['write_price'])} "
               f"per 1 MiB unit" + (f", capacity {vote['capacity']} bytes" if vote["capacity"] else "")
               + (f", proposals {vote['proposals']}" if vote["proposals"] else "")
               + (f", commission {vote['commission_bps']} bps" if vote["commission_bps"] is not None else "")
               + f" (node {vote['node']})")


COMMANDS = (price_cmd, vote_cmd)
