"""Down marks and down reports of the heartbeat links (node/liveness.py's Liveness): a lost
link that cannot be reopened marks its peer down here and sends one signed ``DownReport``
on gossip; a received report is checked by reaching the subject, and a report about this
node is refuted by signing a fresh record.
"""

from __future__ import annotations

import logging
import random
import time

import trio
from libp2p.peer.id import ID

from p2pwalrus.core.liveness import DownReport, InvalidLivenessMessage, SignedDownReport, sign_down_report

logger = logging.getLogger("p2pwalrus.node.liveness")  # the log name these lines always had


class _DownReports:
    """Liveness's lost links, down marks and reports (uses its ``node``, ``members``,
    ``config``, ``links``, ``topic``, ``counters``, ``_open_link`` and ``_note_retry``)."""

    # --- a link lost ------------------------------------------------------------------

    async def _link_lost(self, peer: str, reason: str, silent: bool) -> None:
        denied = peer in self.node.deny
        if peer not in self.members.live:
            if peer in self._retry:
                self._note_retry(peer)  # a down peer's link died before it sent its record: later
            return
        if peer not in self._targets and not denied:
            # Not ours to watch: its own watchers report it. But a report that reached us
            # while this link still looked alive was passed over (heard_recently): check now.
            seq = self._reported_seq(peer)
            if seq is not None and peer not in self._checking:
                self._checking.add(peer)
                self._nursery.start_soon(self._check, peer, seq)
            return
        self.counters["links_lost"] += 1
        logger.info("heartbeat link to %s lost (%s)", peer, reason)
        if denied:
            pass  # we may not reach it: down
        elif silent:
            # The peer froze or its host vanished: its connection is stuck, and a fresh dial
            # would hang in the handshake. Down now; the retry loop tries it again later.
            await self._disconnect(peer)
        elif peer not in self._opening and peer not in self.links:
            # The stream or connection ended: a process that died refuses a new dial at once,
            # one whose stream alone was reset takes the new link.
            self._opening.add(peer)
            if await self._open_link(peer):
                return
        if peer in self.links:
            return
        await self._declare_down(peer)

    def _reported_seq(self, peer: str) -> int | None:
        """The record seq a received down report about `peer` names, if any is at least the
        one we hold."""
        held = self.members.live.get(peer)
        seqs = [seq for (subject, seq), who in self._reporters.items() if subject == peer and who]
        if held is None or not seqs or max(seqs) < held.record.seq:
            return None
        return max(seqs)

    async def _disconnect(self, peer: str) -> None:
        await self.node.close_connection(ID.from_base58(peer))

    async def _declare_down(self, peer: str, seq: int | None = None, report: bool = True) -> None:
        signed = self.members.live.get(peer)
        if signed is None:
            return
        seq = signed.record.seq if seq is None else seq
        if self.members.mark_down(peer, seq) is None:
            return
        self._note_retry(peer)
        logger.info("peer %s is down (%d live)", peer, len(self.members.live))
        if not report:
            return
        # Several watchers notice one death at once: wait a moment, and stay quiet if enough
        # other watchers' reports reached us first.
        await trio.sleep(random.uniform(0, 1.0))
        reporters = self._reporters.setdefault((peer, seq), set())
        if len(reporters) >= self.config.reporters_needed:
            return
        reporters.add(self.me)
        report_msg = sign_down_report(self.members.keypair, DownReport(
            self.members.config.network, self.me, peer, seq, time.time()))
        try:
            await self.node.pubsub.publish(self.topic, report_msg.to_bytes())
            self.counters["down_reports_sent"] += 1
        except Exception as exc:
            logger.info("publishing a down report failed: %r", exc)

    # --- down reports -----------------------------------------------------------------

    def parse_report(self, data: bytes) -> SignedDownReport:
        return SignedDownReport.from_bytes(data, network=self.members.config.network, now=time.time(),
                                           max_age=self.config.report_max_age)

    def validate_report(self, forwarder, msg) -> bool:
        """GossipSub validator: a well-formed report, signed by a member, sent by its signer."""
        try:
            signed = self.parse_report(msg.data)
            if ID(msg.from_id).to_base58() != signed.report.reporter:
                return False
            return signed.report.reporter in self.members.live and signed.report.reporter not in self.node.deny
        except Exception as exc:  # a validator never raises
            logger.debug("down report from %s rejected: %r", forwarder, exc)
            return False

    async def _down_receive_loop(self, subscription) -> None:
        while True:
            msg = await subscription.get()
            try:
                report = self.parse_report(msg.data).report
            except InvalidLivenessMessage:
                continue
            self.counters["down_reports_received"] += 1
            if len(self._reporters) > 10_000:
                self._reporters.clear()
            self._reporters.setdefault((report.subject, report.seq), set()).add(report.reporter)
            if report.subject == self.me:
                self._refute()
            elif report.subject in self.members.live and report.subject not in self._checking:
                # (A second report for a subject we are checking is counted above, and _check
                # reads the count when its dial has failed.)
                if self._worth_checking(report.subject, report.seq):
                    self._checking.add(report.subject)
                    self._nursery.start_soon(self._check, report.subject, report.seq, self.config.check_spread)

    def _worth_checking(self, peer: str, seq: int) -> bool:
        """A report about ``peer`` at ``seq`` is still open here: we hold no newer record of
        it, and no link of ours has heard from it lately."""
        held = self.members.live.get(peer)
        return held is not None and held.record.seq <= seq and not self.heard_recently(peer)

    async def _check(self, peer: str, seq: int, spread: float = 0.0) -> None:
        """A report says ``peer`` is down: believe it only if we cannot reach it either, and
        either its host refused us at once or more than one watcher says so. (A dial that
        times out may be our own overloaded loop: one report and a slow dial are not enough.)

        ``spread``: first wait a random part of it, and check only if the peer has not refuted
        the report meanwhile. Every node that receives a report checks it: at 100 nodes, all
        at once, a slow but live subject took a connection from each of them (99 handshakes on
        an already overloaded node, whose slowness had caused the report)."""
        try:
            if spread:
                await trio.sleep(random.uniform(0, spread))
                if not self._worth_checking(peer, seq):
                    return  # refuted (a newer record), back on a link, or down here already
            if peer in self.links or peer in self._opening:
                return
            self._opening.add(peer)
            t0 = trio.current_time()
            if await self._open_link(peer):
                return
            refused = trio.current_time() - t0 < self.config.refused_within
            if refused or len(self._reporters.get((peer, seq), ())) >= self.config.reporters_needed:
                await self._declare_down(peer, seq, report=False)
        finally:
            self._checking.discard(peer)

    def _refute(self) -> None:
        now = time.monotonic()
        if now - self._last_refute < self.config.refute_every:
            return
        self._last_refute = now
        logger.info("a peer reported us down: signing a fresh record")
        self.members.request_publish()
