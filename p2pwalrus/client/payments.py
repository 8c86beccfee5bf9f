"""Paying for stores and extensions from a wallet (issue 16).

Before anything is uploaded the client asks the committee for the prices in force and its
balance (``Wallet.account``: numbers that members weighing more than ``f`` shards vouch
for), computes the cost (``core/wal/pricing.py``) and refuses a store it cannot pay for,
saying the cost and the balance. Then it pays with a ledger ``storage`` order bound to the
blob ID, its encoded size and the epochs, certified and confirmed at the committee, and
sends that certificate with the store: holders sign only a store it covers.

A payment that this wallet already made for the same blob and epochs (a store that was
interrupted after paying, then run again) is used again instead of paying twice: it is in
the wallet's journal. At price 0 nothing is asked and nothing is paid.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..core.wal.amounts import format_amount
from ..core.wal.orders import Certificate, InvalidOrderError, OrderKind, StoragePayload
from ..core.wal.pricing import StoreCost, store_cost
from .wallet import InsufficientBalanceError, Wallet
from ..errors import InsufficientFundsError  # noqa: F401  (defined in errors.py; importable from here)


@dataclass(frozen=True)
class Quote:
    cost: StoreCost
    balance: int
    address: str
    known: bool

    @property
    def enough(self) -> bool:
        return self.cost.total <= self.balance

    def to_json(self) -> dict:
        return {**self.cost.to_json(), "balance": self.balance, "address": self.address}


def default_journal_root() -> Path:
    """Where the CLI keeps the client key's wallet journal (P2PWALRUS_CLIENT_DIR/wallet)."""
    import platformdirs

    where = os.environ.get("P2PWALRUS_CLIENT_DIR")
    return (Path(where) if where else Path(platformdirs.user_data_dir("p2pwalrus")) / "client") / "wallet"


def describe(cost: StoreCost) -> str:
    """'1.2 WAL (3 units of 1 MiB encoded x 5 epochs x 0.08 WAL + write 3 x 0.01 WAL)'."""
    parts = f"{cost.units} unit(s) of 1 MiB encoded x {cost.epochs} epoch(s) x {format_amount(cost.storage_price)}"
    if cost.write_price:
        parts += f" + write {cost.units} x {format_amount(cost.write_price)}"
    return f"{format_amount(cost.total)} ({parts})"


def file_cost(storage_price: int, write_price: int, size: int, n_shards: int, epochs: int,
              chunk_size: int | None = None) -> tuple[int, int]:
    """(FROST, blobs) to store a file of ``size`` bytes: one blob if it fits (``chunk_size``
    None), else each chunk and the manifest, each billed as the blob it is."""
    from ..core.manifest import default_chunk_size, file_manifest_length, plan_chunks

    chunk = chunk_size or default_chunk_size(n_shards)
    if chunk_size is None and size <= chunk:
        return store_cost(storage_price, write_price, size, n_shards, epochs).total, 1
    chunks = plan_chunks(size, chunk)
    total = sum(store_cost(storage_price, write_price, c, n_shards, epochs).total for c in chunks)
    total += store_cost(storage_price, write_price, file_manifest_length(len(chunks)), n_shards, epochs).total
    return total, len(chunks) + 1


class StorePayer:
    def __init__(self, client, keypair, journal_root: Path | None = None):
        import trio

        self.wallet = Wallet(client, keypair, journal_root or default_journal_root())
        self.n_shards = client.net.n_shards
        # One order at a time: chunks stored in parallel (or a gateway's concurrent PUTs) would
        # otherwise sign two orders at one sequence number, which can lock the account (FastPay).
        self.lock = trio.Lock()

    @property
    def address(self) -> str:
        return self.wallet.address

    async def quote(self, length: int, epochs: int, *, write: bool = True, timeout: float | None = None) -> Quote:
        """The cost at the prices the committee vouches for, and this wallet's balance."""
        view = await self.wallet.account(quick=True, timeout=timeout)
        g = self.wallet.genesis
        storage, write_price = view.prices if view.prices is not None else (g.storage_price, g.write_price)
        cost = store_cost(storage, write_price, length, self.n_shards, epochs, write=write)
        return Quote(cost, view.balance if view.known else 0, self.address, view.known)

    def refuse_if_short(self, quote: Quote, what: str) -> None:
        if quote.cost.total and not quote.enough:
            raise InsufficientFundsError(
                f"{what} costs {describe(quote.cost)}; {quote.address} has {format_amount(quote.balance)}: "
                f"nothing was uploaded. Fund this account first (on a netlab testnet: netlab faucet "
                f"{quote.address} 10WAL)", quote.cost.total, quote.balance)

    def paid_already(self, payload: StoragePayload, amount: int) -> Certificate | None:
        """A certified payment in the journal for this blob that covers these epochs."""
        for entry in reversed(self.wallet.journal.entries()):
            if entry.get("state") != "done" or not entry.get("certificate"):
                continue
            try:
                cert = Certificate.from_json(entry["certificate"])
            except (InvalidOrderError, KeyError):
                continue
            pay = cert.order.storage
            if (pay is not None and pay.blob_id == payload.blob_id and pay.encoded_size == payload.encoded_size
                    and pay.start_epoch <= payload.start_epoch and pay.end_epoch >= payload.end_epoch
                    and cert.order.amount >= amount and cert.order.genesis == self.wallet.genesis_hash):
                return cert
        return None

    async def pay(self, quote: Quote, blob_id: bytes, start_epoch: int, end_epoch: int,
                  what: str) -> tuple[Certificate | None, int]:
        """(certificate of a storage payment for ``blob_id``, epochs ``[start, end)``, FROST paid
        now): one from the journal if it covers them (0 paid now), else a new one; (None, 0) at
        price 0."""
        if not quote.cost.total:
            return None, 0
        payload = StoragePayload(blob_id, quote.cost.encoded_length, start_epoch, end_epoch)
        async with self.lock:
            cert = self.paid_already(payload, quote.cost.total)
            if cert is not None:
                return cert, 0
            try:
                cert = await self.wallet.submit(OrderKind.STORAGE, "", quote.cost.total, payload.to_bytes())
                return cert, cert.order.amount
            except InsufficientBalanceError as exc:
                raise InsufficientFundsError(f"{what} costs {describe(quote.cost)}; {exc}", quote.cost.total,
                                             exc.balance) from None
