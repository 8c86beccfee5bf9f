"""WAL on a netlab testnet: the genesis `netlab up` writes, and `netlab faucet`.

Every node of a new testnet is in the genesis committee with NODE_STAKE of its own, and
a faucet account holds FAUCET_BALANCE; its key is kept in ``DIR/faucet/identity.key``
(with its order journal in ``DIR/faucet/wallet``), so that `netlab faucet` can pay from
it. Prices are 0: a testnet needs no WAL to store.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from p2pwalrus.config import NetworkConfig

FAUCET_DIR = "faucet"
NODE_STAKE = 1_000 * 10**9  # FROST: 1000 WAL per genesis node
FAUCET_BALANCE = 1_000_000_000 * 10**9  # FROST: a billion WAL for test clients


def faucet_key(lab_dir: Path):
    from p2pwalrus.p2p.identity import load_or_create_identity

    return load_or_create_identity(Path(lab_dir) / FAUCET_DIR)


def netlab_genesis(lab_dir: Path, net: NetworkConfig, node_ids, *, storage_price: int = 0, write_price: int = 0):
    """The genesis of a new testnet: its nodes as the committee, and the faucet's account;
    prices 0 (free to store) unless given."""
    from p2pwalrus.client.wallet import address_of
    from p2pwalrus.core.wal.genesis import make_genesis

    return make_genesis(network=net.name, n_shards=net.n_shards, genesis_time=net.genesis_time,
                        epoch_length=net.epoch_length, committee=[(p, NODE_STAKE) for p in node_ids],
                        accounts=[(address_of(faucet_key(lab_dir)), FAUCET_BALANCE)],
                        storage_price=storage_price, write_price=write_price,
                        parameters={"max_epochs_ahead": net.max_epochs_ahead})


def pay_from_faucet(lab_dir: Path, address: str, amount: int):
    """Transfer ``amount`` FROST from the testnet's faucet to ``address``; the certificate."""
    import trio

    from p2pwalrus.client.client import open_client
    from p2pwalrus.client.wallet import Wallet

    from .lab import Lab

    lab = Lab.open(lab_dir)
    key = faucet_key(lab.dir)

    async def run():
        async with open_client(lab.client_network(), key) as client:
            await client.refresh_membership()
            return await Wallet(client, key, lab.dir / FAUCET_DIR / "wallet").transfer(address, amount)

    return trio.run(run)


@click.command("faucet")
@click.argument("address")
@click.argument("amount")
@click.option("--dir", "directory", default="./netlab-run", show_default=True, type=click.Path(file_okay=False),
              help="Testnet directory (network.toml, netlab.json, one data dir per node).")
def faucet_cmd(address, amount, directory):
    """Send AMOUNT (e.g. 10WAL, 1.5WAL, 300FROST) from the testnet's faucet to ADDRESS."""
    from p2pwalrus.core.wal.amounts import AmountError, format_amount, parse_amount
    from p2pwalrus.core.wal.genesis import GenesisError, check_address
    from p2pwalrus.errors import P2PWalrusError

    try:
        frost = parse_amount(amount)
        check_address(address, "ADDRESS")
    except (AmountError, GenesisError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    try:
        cert = pay_from_faucet(Path(directory), address, frost)
    except P2PWalrusError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"sent {format_amount(frost)} from the faucet to {address} (faucet sequence {cert.order.sequence})")
