"""`p2pwalrus committee [--epoch E] [--json]`: the decided committee of an epoch.

The client pulls the chain of decided epoch states from the network's nodes and verifies
every link from the genesis in its network file (client/epochs.py), so what it prints
is what every honest node holds, whichever node answered.
"""

from __future__ import annotations

import json

import click

from .cli_common import ledger_network, network_option, with_client
from .errors import EpochNotDecidedError


def committee_view(client, epoch: int | None) -> dict:
    """The committee of ``epoch`` (default: the latest decided) as a JSON-ready dict."""
    from .core.wal.amounts import format_amount
    from .core.wal.committee import committee_from_state

    view = client.epochs
    latest = view.current.epoch
    want = latest if epoch is None else epoch
    state = view.state_for(want)
    if state is None:
        clock = client.net.current_epoch()
        why = ("its agreement is under way or stalled (no quorum of the committee reachable?)" if want <= clock
               else "it has not begun on the network's clock")
        raise EpochNotDecidedError(f"epoch {want} is not decided yet ({why}); the latest decided epoch is {latest}, "
                                   f"the clock is at epoch {clock}")
    committee = committee_from_state(state)
    live = set(client.records)
    members = [{"peer_id": m.peer_id, "stake": m.stake, "stake_wal": format_amount(m.stake), "shards": len(m.shards),
                "shard_indices": list(m.shards), "live": m.peer_id in live} for m in state.committee]
    return {
        "network": state.network, "epoch": state.epoch, "latest_decided_epoch": latest,
        "clock_epoch": client.net.current_epoch(), "digest": state.digest.hex(),
        "prev_digest": state.prev_digest.hex(), "n_shards": state.n_shards,
        "quorum_shards": committee.quorum_weight, "total_stake": sum(m.stake for m in state.committee),
        "shard_cap": state.shard_cap, "members": members,
        "prices": {"storage_price_per_unit": state.prices.storage_price_per_unit,
                   "write_price_per_unit": state.prices.write_price_per_unit},
    }


@click.command("committee")
@click.option("--epoch", "epoch", type=click.IntRange(0), default=None, metavar="E",
              help="Which epoch (default: the latest decided one).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object (stakes in FROST).")
@network_option
@click.pass_context
def committee_cmd(ctx, epoch, as_json, network):
    """The committee of an epoch: members, their stakes and shard counts, and the state's digest.

    Learnt from the nodes and verified link by link from the genesis of the network file."""
    from .core.wal.amounts import format_amount

    net = ledger_network(ctx, network)

    async def run(client):
        return committee_view(client, epoch)

    out = with_client(net, run)
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"epoch {out['epoch']} of {out['network']} (latest decided {out['latest_decided_epoch']}, clock "
               f"{out['clock_epoch']}): {len(out['members'])} members, {out['n_shards']} shards, quorum "
               f"{out['quorum_shards']}, cap {out['shard_cap']} per node")
    click.echo(f"digest {out['digest']}")
    for m in out["members"]:
        click.echo(f"  {m['peer_id']}  stake {format_amount(m['stake']):>18}  shards {m['shards']:>3}"
                   + ("" if m["live"] else "  (not live)"))
    click.echo(f"total stake {format_amount(out['total_stake'])}")


COMMANDS = (committee_cmd,)
