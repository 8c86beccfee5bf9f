"""The CLI's node and network commands: `node` runs a storage node; `info`, `health` and
`list-blobs` ask the live nodes what they hold and agree on.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from .cli_common import (
    json_network_options, network_option, parse_size, quiet_libp2p, resolve_network, serve_until_stopped, with_client,
)
from .errors import P2PWalrusError
from .core import thresholds


@click.command("node")
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
    serve_until_stopped(run_node_until_signal, node)


@click.command("info")
@json_network_options()
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


@click.command("health")
@json_network_options()
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


@click.command("list-blobs")
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


COMMANDS = (node_cmd, info_cmd, health_cmd, list_blobs_cmd)
