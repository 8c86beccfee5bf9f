"""A wallet's history: certificates fetched from the committee's members (each checked against the
committee of its epoch), the orders the account sent and the transfers it received.
"""

from __future__ import annotations

import logging

from ..core.wal import messages as msg
from ..core.wal.orders import Certificate, InvalidOrderError
from ..core import protocols

logger = logging.getLogger("p2pwalrus.wallet")


class WalletHistory:
    """Wallet methods: certificates and the account's history."""

    async def fetch_certificate(self, sender: str, seq: int) -> Certificate | None:
        got = await self.fetch_certificates(sender, seq, 1)
        return got[0] if got else None

    async def fetch_certificates(self, sender: str, first: int, count: int) -> list[Certificate]:
        """Certificates of ``sender`` from ``first`` on, checked against the committee, from the
        first member that has them."""
        from .wallet import CALL_TIMEOUT  # (wallet.py imports this module)

        for peer in self.members():
            if peer not in self.client.records:
                continue
            out: list[Certificate] = []
            try:
                while len(out) < count:
                    request = msg.CertsRequest(sender, first + len(out), min(msg.CERT_PAGE, count - len(out)))
                    reply = msg.parse_reply(await self.client.call(peer, protocols.LEDGER_CERTS, request.to_json(),
                                                                   timeout=CALL_TIMEOUT), msg.CertsReply)
                    page = reply.certificates if isinstance(reply, msg.CertsReply) else ()
                    if not page:
                        break
                    for cert in page:
                        committee = self.committee_for(cert.order.epoch)
                        if committee is None:
                            raise InvalidOrderError(f"no committee known here for epoch {cert.order.epoch}")
                        cert.check(committee)
                        if cert.order.sender != sender or cert.order.sequence != first + len(out):
                            raise InvalidOrderError("certificate out of place")
                        out.append(cert)
            except Exception as exc:
                logger.info("certificates of %s from %s: %s", sender, peer, exc)
                continue
            if out:
                return out
        return []

    async def history(self, limit: int = 50) -> list[dict]:
        """This account's confirmed orders and the transfers it received, oldest first."""
        view = await self.account()
        first = max(0, view.next_sequence - limit)
        sent = await self.fetch_certificates(self.address, first, view.next_sequence - first)
        answers, _ = await self._ask_all(protocols.LEDGER_CERTS, msg.ReceivedRequest(self.address),
                                         reply=msg.ReceivedReply)
        refs = {r for a in answers.values() if isinstance(a, msg.ReceivedReply) for r in a.received[-limit:]}
        received = []
        for sender, seq in sorted(refs)[:limit]:
            cert = await self.fetch_certificate(sender, seq)
            if cert is not None and cert.order.recipient == self.address:
                received.append(cert)
        rows = [{"direction": "out", "kind": c.order.kind.value, "sequence": c.order.sequence,
                 "counterparty": c.order.recipient, "amount": c.order.amount} for c in sent]
        rows += [{"direction": "in", "kind": c.order.kind.value, "sequence": c.order.sequence,
                  "counterparty": c.order.sender, "amount": c.order.amount} for c in received]
        return rows
