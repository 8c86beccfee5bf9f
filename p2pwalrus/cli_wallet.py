"""`p2pwalrus wallet ...`, `stake` and `unstake`: the WAL ledger from the command line.

The account is the client's key (the one kept under P2PWALRUS_CLIENT_DIR, which also
signs delete requests); its orders are journaled beside it, in ``wallet/``. Thin layers
over p2pwalrus/client/wallet.py; every refusal is one sentence (p2pwalrus.errors).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from .cli_common import client_dir, client_key, ledger_network, network_option, note_interrupt, with_client
from .errors import P2PWalrusError

def _amount(text: str) -> int:
    from .core.wal.amounts import AmountError, parse_amount

    try:
        amount = parse_amount(text)
    except AmountError as exc:
        raise P2PWalrusError(str(exc)) from None
    if amount == 0:
        raise P2PWalrusError("the amount must be more than 0")
    return amount


def _check_address(text: str, what: str) -> str:
    from .core.wal.genesis import GenesisError, check_address

    try:
        return check_address(text, what)
    except GenesisError:
        raise P2PWalrusError(f"{what} {text[:60]!r} is not an account address (a peer ID such as 12D3KooW...; "
                             "`p2pwalrus wallet address` prints yours)") from None


def _wallet_dir(ctx) -> Path | None:
    """A named wallet's directory (its key and journal), or None for the client's own key."""
    name = (ctx.find_object(dict) or {}).get("wallet_name")
    if not name:
        return None
    if not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise P2PWalrusError(f"bad wallet name {name!r}: use letters, digits, '-', '_' and '.'")
    return client_dir() / "wallets" / name


def _wallet_key(ctx):
    from .p2p.identity import load_or_create_identity

    where = _wallet_dir(ctx)
    return load_or_create_identity(where) if where is not None else client_key()


def _run_wallet(ctx, network, fn):
    """Run ``fn(wallet)`` with a connected client; the wallet is the client's key or a named one."""
    from .client.wallet import Wallet

    net = ledger_network(ctx, network)
    key = _wallet_key(ctx)
    journal = (_wallet_dir(ctx) or client_dir()) / "wallet"
    return with_client(net, lambda client: fn(Wallet(client, key, journal)))


def _wallet_option(f):
    def remember(ctx, _param, value):
        if value:
            ctx.ensure_object(dict)["wallet_name"] = value
        return value

    return click.option("--wallet", "wallet_name", default=None, metavar="NAME", expose_value=False,
                        callback=remember, help="A named wallet (its own key, kept under P2PWALRUS_CLIENT_DIR/"
                                                "wallets/NAME) instead of the client's key.")(f)


_SAVED = "interrupted; a signed order is saved and the next wallet command sends it again"


def _send_order(ctx, network, to: str, what: str, amount: str, send, done: str) -> None:
    """A transfer, stake or unstake of AMOUNT to the account `to` (argument `what`):
    checked, journaled, sent by ``send(wallet, frost)``; ``done`` is the line printed,
    with {amount} and {to}."""
    from .core.wal.amounts import format_amount

    _check_address(to, what)
    frost = _amount(amount)
    note_interrupt(_SAVED)
    cert = _run_wallet(ctx, network, lambda w: send(w, frost))
    click.echo(done.format(amount=format_amount(frost), to=to) + f" (sequence {cert.order.sequence})")


@click.group("wallet")
@_wallet_option
def wallet_cmd():
    """Your WAL account: its address, balance, transfers and history.

    The account is this client's key (under P2PWALRUS_CLIENT_DIR). Amounts take a WAL or
    FROST suffix (1 WAL = 10^9 FROST); a plain number is FROST.
    """


@wallet_cmd.command("address")
@click.pass_context
def address_cmd(ctx):
    """Print this wallet's address (its peer ID), to receive WAL."""
    from .client.wallet import address_of

    click.echo(address_of(_wallet_key(ctx)))


@wallet_cmd.command("balance")
@click.argument("address", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object (amounts in FROST).")
@network_option
@click.pass_context
def balance_cmd(ctx, address, as_json, network):
    """The balance and stakes of this wallet (or of ADDRESS), as the committee's nodes vouch."""
    from .core.wal.amounts import format_amount

    if address:
        _check_address(address, "ADDRESS")

    async def run(wallet):
        return await wallet.account(address)

    view = _run_wallet(ctx, network, run)
    if as_json:
        click.echo(json.dumps({"address": view.address, "known": view.known, "balance": view.balance,
                               "next_sequence": view.next_sequence, "stakes": view.stakes,
                               "answered": view.answered, "unreachable": sorted(view.unreachable)}))
        return
    click.echo(f"{view.address}: {format_amount(view.balance)}" + ("" if view.known else " (unknown account)"))
    for node, amount in sorted(view.stakes.items()):
        click.echo(f"  staked {format_amount(amount)} with {node}")


@wallet_cmd.command("transfer")
@click.argument("to")
@click.argument("amount")
@network_option
@click.pass_context
def transfer_cmd(ctx, to, amount, network):
    """Send AMOUNT (e.g. 1.5WAL, 300FROST) to the account TO."""
    _send_order(ctx, network, to, "TO", amount, lambda w, frost: w.transfer(to, frost), "sent {amount} to {to}")


@wallet_cmd.command("history")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True, help="At most this many of each.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (amounts in FROST).")
@network_option
@click.pass_context
def history_cmd(ctx, limit, as_json, network):
    """This account's confirmed orders and the transfers it received."""
    from .core.wal.amounts import format_amount

    rows = _run_wallet(ctx, network, lambda w: w.history(limit))
    if as_json:
        click.echo(json.dumps(rows))
        return
    for r in rows:
        if r["direction"] == "out":
            click.echo(f"#{r['sequence']:<5} {r['kind']:<8} -{format_amount(r['amount'])}  to {r['counterparty'] or 'the storage fund'}")
        else:
            click.echo(f"       received +{format_amount(r['amount'])}  from {r['counterparty']} (its #{r['sequence']})")
    if not rows:
        click.echo("no confirmed orders yet")


@click.command("stake")
@click.argument("node")
@click.argument("amount")
@_wallet_option
@network_option
@click.pass_context
def stake_cmd(ctx, node, amount, network):
    """Stake AMOUNT of this wallet's WAL with the storage node NODE (its peer ID).

    NODE is a member of the committee, or a live storage node outside it (staking it in).
    The stake is certified at once; it weighs in shard placement from the epoch change
    that follows (`p2pwalrus committee` shows it once decided)."""
    _send_order(ctx, network, node, "NODE", amount, lambda w, frost: w.stake(node, frost),
                "staked {amount} with {to}")


@click.command("unstake")
@click.argument("node")
@click.argument("amount")
@_wallet_option
@network_option
@click.pass_context
def unstake_cmd(ctx, node, amount, network):
    """Take AMOUNT of this wallet's stake back from the storage node NODE."""
    _send_order(ctx, network, node, "NODE", amount, lambda w, frost: w.unstake(node, frost),
                "unstaked {amount} from {to}")


COMMANDS = (wallet_cmd, stake_cmd, unstake_cmd)
