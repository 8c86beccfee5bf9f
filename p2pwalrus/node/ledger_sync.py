"""The ledger's anti-entropy (node/ledger_service.py's LedgerService): serving certificates
(``ledger-certs``) and account summaries (``ledger-summary``), and pulling what this node
missed from its peers: at start, when the shard map changes and every ``repair_interval``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random

import trio

from ..core import protocols
from ..core.wal import messages as msg
from ..core.wal.ledger import Applied
from ..core.wal.orders import Certificate
from ..errors import ProtocolError
from ..p2p import rpc
from .ledger_store import LedgerStore

logger = logging.getLogger("p2pwalrus.ledger")

CERT_PAGE = msg.CERT_PAGE  # certificates per ledger-certs answer (about 3 KiB each at 10 authorities)
CERT_PAGE_BYTES = 2 << 20  # ... and fewer if they are large: answers stay under rpc.MAX_LIST_REPLY
MAX_RECEIVED = msg.MAX_RECEIVED
MAX_SUMMARY_ACCOUNTS = msg.MAX_SUMMARY_ACCOUNTS  # about 3 MiB of summary, under rpc.MAX_LIST_REPLY (paging: later)
CATCH_UP_TIMEOUT = 20.0  # anti-entropy: pulling a sender's missing certificates from peers
CATCH_UP_IN_REQUEST = 5.0  # the same while a client waits for an answer (its call gives up at 10 s)
SYNC_PEERS = 2  # peers asked for their summary per anti-entropy round



def _stored_certificate(store: LedgerStore, sender: str, seq: int) -> tuple[Certificate, int] | None:
    """A certificate applied here, read back (and parsed) from disk, with its size; None if absent."""
    raw = store.get_certificate(sender, seq)
    if raw is None:
        return None
    try:
        return Certificate.from_json(json.loads(raw)), len(raw)
    except (ValueError, RecursionError, ProtocolError) as exc:  # a damaged file
        logger.warning("ledger: certificate %s/%d on disk is unreadable (%s): not served", sender, seq, exc)
        return None


class _LedgerSync:
    """LedgerService's certificate and summary serving and pulling (uses its ``node``,
    ``ledger``, ``store``, ``received``, ``committee``, ``counters``, ``confirm`` and
    ``sync_wanted``)."""

    # --- serving certificates and summaries ---

    async def handle_certs(self, stream, peer: str) -> None:
        req = msg.parse_certs_request(await rpc.recv_json(stream))
        if isinstance(req, msg.ReceivedRequest):
            refs = self.received.get(req.recipient, [])[-MAX_RECEIVED:]
            await rpc.send_json(stream, msg.ReceivedReply(tuple(refs)).to_json())
            return
        out, size = [], 0
        for seq in range(req.first, min(req.first + min(req.count, CERT_PAGE), 1 << 64)):
            got = await trio.to_thread.run_sync(_stored_certificate, self.store, req.sender, seq)
            if got is None or (out and size + got[1] > CERT_PAGE_BYTES):
                break
            size += got[1]
            out.append(got[0])
        await rpc.send_json(stream, msg.CertsReply(tuple(out)).to_json())

    def summary_digest(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        for address, acct in sorted(self.ledger.accounts.items()):
            h.update(f"{address}:{acct.next_sequence};".encode())
        return h.hexdigest()

    async def handle_summary(self, stream, peer: str) -> None:
        req = msg.SummaryRequest.from_json(await rpc.recv_json(stream))
        digest = self.summary_digest()
        if req.digest == digest:
            await rpc.send_json(stream, msg.SummaryReply(same=True).to_json())
            return
        accounts = [(a, x.next_sequence) for a, x in self.ledger.accounts.items() if x.next_sequence]
        await rpc.send_json(stream, msg.SummaryReply(digest=digest,
                                                     accounts=tuple(accounts[:MAX_SUMMARY_ACCOUNTS])).to_json())

    # --- pulling what this node missed ---

    def _peers(self) -> list[str]:
        members = self.node.members
        live = set(members.live.peer_ids()) if members is not None else set()
        peers = [p for p in self.committee.members if p != self.node.peer_id and p in live and p not in self.node.deny]
        random.shuffle(peers)
        return peers

    async def _fetch(self, peer: str, protocol, request, reply_type):
        """``peer``'s typed answer to ``request``; ProtocolError if it refused or answered amiss."""
        stream, obj = await self.node.call(peer, protocol, request.to_json())
        await rpc.close_quietly(stream)
        reply = msg.parse_reply(obj, reply_type)
        if isinstance(reply, msg.Refused):
            raise ProtocolError(f"{peer} answered {reply.error or 'not ok'}")
        return reply

    async def catch_up(self, sender: str, first: int, last: int, peers: list[str] | None = None,
                       timeout: float = CATCH_UP_IN_REQUEST) -> None:
        """Pull and apply ``sender``'s certificates ``first..last`` from peers (bounded in time)."""
        with trio.move_on_after(timeout):
            for peer in peers or self._peers():
                try:
                    while True:
                        acct = self.ledger.account(sender)
                        have = acct.next_sequence if acct else 0
                        if have > last:
                            return
                        reply = await self._fetch(peer, protocols.LEDGER_CERTS,
                                                  msg.CertsRequest(sender, have, min(CERT_PAGE, last - have + 1)),
                                                  msg.CertsReply)
                        if not reply.certificates:
                            break
                        for expected, cert in enumerate(reply.certificates, start=have):
                            if cert.order.sender != sender or cert.order.sequence != expected:
                                raise ProtocolError("a certificate other than the one asked for")
                            if not isinstance(await self.confirm(cert, pull=False), Applied):
                                raise ProtocolError("certificates out of sequence")
                            self.counters["pulled"] += 1
                except Exception as exc:  # a peer's bad answer or a dead stream: try the next peer
                    logger.info("ledger: pulling certificates of %s from %s failed: %s", sender, peer, exc)

    async def sync_once(self) -> int:
        """Compare account summaries with a few peers; pull every sender we are behind on."""
        pulled = self.counters["pulled"]
        for peer in self._peers()[:SYNC_PEERS]:
            try:
                reply = await self._fetch(peer, protocols.LEDGER_SUMMARY, msg.SummaryRequest(self.summary_digest()),
                                          msg.SummaryReply)
            except Exception as exc:
                logger.debug("ledger summary from %s: %r", peer, exc)
                continue
            for address, next_sequence in reply.accounts:  # none when the digests match ("same")
                acct = self.ledger.account(address)
                have = acct.next_sequence if acct else 0
                if next_sequence > have:
                    await self.catch_up(address, have, next_sequence - 1, [peer], CATCH_UP_TIMEOUT)
        return self.counters["pulled"] - pulled

    async def run_sync(self) -> None:
        """Anti-entropy: at start, on every shard-map change (a peer back, a partition healed)
        and every repair_interval."""
        async def watch_map():
            while True:
                await self.node.map_changed.wait()
                self.sync_wanted.set()
                await trio.sleep(0)  # map_changed is replaced once set: wait on the new one

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_map)
            while True:
                with trio.move_on_after(self.node.net.timings.repair_interval):
                    await self.sync_wanted.wait()
                self.sync_wanted = trio.Event()
                try:
                    got = await self.sync_once()
                    if got:
                        logger.info("ledger: pulled %d certificate(s) this node had missed", got)
                except Exception as exc:
                    logger.info("ledger anti-entropy round failed: %r", exc)
