"""Whether a storage payment pays for a store or an extension (pure).

A store (or an extension) carries the certificate of a ledger order of kind ``storage``
whose payload names the blob ID, its encoded size and the epochs ``[start, end)`` it pays
for. A holder signs a confirmation only if that payment:

- is for this blob (a payment is bound to one blob ID: it cannot pay for another);
- names the blob's true encoded size (from the metadata the holder verified);
- covers the epochs asked for: ``start <= epoch`` and ``end_epoch <= end`` for a store;
  for an extension, ``start <=`` the end epoch already certified and ``end_epoch <= end``;
- amounts to at least the cost of *all* the epochs it names, at the prices in force
  (``storage_price * units * (end - start)``, plus ``write_price * units`` for a store).

Because a payment pays for every epoch it names, using it again for the same blob (a
retried store, an extension within the paid epochs) takes nothing that was not paid for.
The certificate's votes are checked by the caller (``Certificate.check`` against the
committee of its epoch).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..rs2 import EncodingConfig
from .amounts import format_amount
from .orders import Order, OrderKind
from .pricing import store_cost
from ...errors import PaymentError  # noqa: F401  (defined in errors.py; importable from here)


def needs_payment(prices: Iterable[tuple[int, int]]) -> bool:
    """Whether any price is above 0 (a network whose prices are 0 asks for no payment)."""
    return any(storage or write for storage, write in prices)


def check_payment(order: Order | None, *, blob_id: bytes, unencoded_length: int, n_shards: int, epoch: int,
                  end_epoch: int, prices: Iterable[tuple[int, int]], extends_from: int | None = None) -> int:
    """The cost the payment covers, or PaymentError saying what is missing.

    ``prices``: the (storage, write) prices this holder accepts now (the current epoch's, and
    the previous one's across a change); the payment must cover the cost at one of them.
    ``extends_from``: the certified end epoch, for an extension (which pays no write price)."""
    prices = list(prices)
    write = extends_from is None
    encoded = EncodingConfig(n_shards).encoded_length(unencoded_length)
    first = extends_from if extends_from is not None else epoch

    def cost(span: int) -> int:
        return min(store_cost(s, w, unencoded_length, n_shards, span, write=write).total for s, w in prices)

    what = "extension" if extends_from is not None else "store"
    if order is None:
        need = cost(end_epoch - first)
        raise PaymentError(f"this {what} must be paid for: {format_amount(need)} for epochs {first}..{end_epoch} "
                           f"({encoded} encoded bytes); pay with a storage payment bound to the blob ID", need)
    pay = order.storage
    if order.kind is not OrderKind.STORAGE or pay is None:
        raise PaymentError(f"the payment is a {order.kind.value} order, not a storage payment")
    if pay.blob_id != blob_id:
        raise PaymentError("the payment is bound to another blob ID: a payment pays for one blob only")
    if pay.encoded_size != encoded:
        raise PaymentError(f"the payment names an encoded size of {pay.encoded_size} bytes; this blob's is {encoded}")
    if pay.start_epoch > first or pay.end_epoch < end_epoch:
        raise PaymentError(f"the payment covers epochs {pay.start_epoch}..{pay.end_epoch}; this {what} needs "
                           f"{first}..{end_epoch}")
    need = cost(pay.end_epoch - pay.start_epoch)
    if order.amount < need:
        raise PaymentError(f"the payment of {format_amount(order.amount)} is short: epochs {pay.start_epoch}.."
                           f"{pay.end_epoch} of {encoded} encoded bytes cost {format_amount(need)} at the current "
                           "prices", need)
    return need
