"""Liveness from held connections, and anti-entropy by digest (see core/liveness.py).

Each node keeps one heartbeat link (a long-lived stream on ``/p2pwalrus/heartbeat/1.2.0``)
with every peer it watches. Both ends send their node record first; then the end with the
lower peer ID sends a 41-byte beat every ``interval`` and the other answers each one: the
cost of an idle network is two small frames per link and period, whatever the time spent
idle. A link that ends (the peer's process died: its
connection closed) or falls silent for ``dead_after`` (the peer froze) is reopened once;
if that fails the peer is marked down here and a signed ``DownReport`` goes out once on
gossip. A node that receives a report checks it by reaching the subject itself, and
the subject refutes a report about itself by signing a fresh record.

Beats carry digests of the sender's live set and certificate set; when a peer's digest
differs from ours on two beats in a row (the same digests or not), we pull from that peer,
once per pair of digests, so two nodes that disagree for good do not pull on every beat.
A record such a pull taught us (gossip missed it here, so likely elsewhere too) is pushed
on at once to every linked peer, and by each that lacked it to its own: a join that gossip
missed reaches the whole network in one round of pulls, not one ring hop per two beats.

Down marks and reports (a lost link, gossip of ``DownReport``, checks and refutations) are
in node/liveness_down.py.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from p2pwalrus.core.liveness import (
    FRAME_BEAT,
    FRAME_RECORD,
    FRAME_RELAY,
    MAX_LINK_FRAME,
    Beat,
    InvalidLivenessMessage,
    record_frame,
    relay_frame,
    watch_targets,
)
from p2pwalrus.core.records import InvalidRecordError, SignedNodeRecord
from p2pwalrus.errors import ProtocolError, StaleRecordError
from p2pwalrus.p2p.framing import encode_frames, read_frame, write_frame
from ..core import protocols
from .liveness_down import _DownReports

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class LivenessConfig:
    """Liveness timings and bounds (seconds, counts), chosen in one place."""

    interval: float = 5.0  # a beat on every link this often (+-20%)
    dead_after: float = 15.0  # a link silent this long is dead (the peer froze or vanished)
    reopen_timeout: float = 4.0  # one attempt to reopen a lost link (dial + stream + first frame)
    refused_within: float = 1.0  # a dial that fails this fast was refused: the peer's host is up, its node is not
    reporters_needed: int = 2  # reports a node needs, beside its own failed dial that was not refused
    watch_all_up_to: int = 16  # networks this small: a link with every member
    neighbours: int = 8  # larger ones: this many ring neighbours
    max_links: int = 64  # inbound links accepted beyond our own targets
    retry_min: float = 2.0  # a down peer whose record is still valid is tried again after this,
    retry_max: float = 60.0  # doubling up to this
    report_max_age: float = 120.0
    refute_every: float = 10.0  # at most one refuting record per this many seconds
    check_spread: float = 3.0  # a report is checked after a random wait up to this (see _check)


@dataclass
class _Link:
    peer: str
    stream: object
    outbound: bool
    last_heard: float = field(default_factory=trio.current_time)
    opened_at: float = field(default_factory=trio.current_time)
    mismatch: set = field(default_factory=set)  # "members"/"certs" that differed at the last beat
    pulled: dict = field(default_factory=dict)  # "members"/"certs" -> (remote, local) pulled for
    closed: bool = False
    replaced: bool = False  # a newer link to the same peer took its place
    sent_seq: int | None = None  # the seq of our record last sent on this link
    remote_watching: bool = True  # the other end watches us (its last beat said so)


class Liveness(_DownReports):
    """Heartbeat links of one node (run it with ``run``; the node owns the nursery)."""

    def __init__(self, node, membership, config: LivenessConfig, *,
                 certs_digest: Callable[[], bytes],
                 pull_certs: Callable[[str], Awaitable[int]]):
        self.node = node
        self.members = membership
        self.config = config
        self.certs_digest = certs_digest
        self.pull_certs = pull_certs
        self.topic = protocols.down_topic(membership.config.network)
        self.links: dict[str, _Link] = {}
        self._opening: set[str] = set()
        self._checking: set[str] = set()
        self._wanted_since: dict[str, float] = {}
        self._targets: set[str] = set()
        self._retry: dict[str, tuple[float, float]] = {}  # down peer -> (next try, backoff)
        self._reporters: dict[tuple[str, int], set[str]] = {}  # (subject, seq) -> who reported it
        self._last_refute = 0.0
        self._wake = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._pulling: set[str] = set()  # "members"/"certs" while a pull by digest runs
        self.counters = {"links_lost": 0, "down_reports_sent": 0, "down_reports_received": 0,
                         "pulls_by_digest": 0, "records_relayed": 0}
        membership.on_missed_by_gossip = self.relay

    @property
    def me(self) -> str:
        return self.members.peer_id

    # --- what others call -----------------------------------------------------------

    def wake(self) -> None:
        """Look at the targets now (membership changed, faults changed)."""
        self._wake.set()

    def pull_again(self, what: str) -> None:
        """Let differing `what` digests be pulled for again, even a pair pulled before (our
        view changed: certificates refused by the old one may pass now)."""
        for link in self.links.values():
            link.pulled.pop(what, None)

    def retry_down_now(self) -> None:
        """Try every down peer again now (a partition healed): those waiting for a retry and
        any other member marked down whose record is still valid."""
        self._retry = {p: (0.0, self.config.retry_min) for p in {*self._retry, *self.members.departed()}}
        self.wake()

    def relay(self, records: list[SignedNodeRecord], source: str | None = None) -> None:
        """Push records gossip missed to every linked peer but ``source`` (and each record's
        own node). A peer that already held one takes it as a repeat and pushes nothing on."""
        if self._nursery is None:
            return
        framed = [(r.peer_id, relay_frame(r.to_bytes())) for r in records]  # once, not once per link
        for peer, link in list(self.links.items()):
            if peer == source or link.closed:
                continue
            frames = [frame for subject, frame in framed if subject != peer]
            if frames:
                self.counters["records_relayed"] += len(frames)
                self._nursery.start_soon(self._send_relay, link, encode_frames(frames))

    async def _send_relay(self, link: _Link, frames: bytes) -> None:
        with trio.move_on_after(self.config.reopen_timeout):
            try:
                await link.stream.write(frames)
            except Exception as exc:  # the link's own loops notice a dead stream
                logger.debug("relaying records to %s: %r", link.peer, exc)

    def heard_recently(self, peer: str) -> bool:
        link = self.links.get(peer)
        return link is not None and trio.current_time() - link.last_heard < self.config.dead_after

    # --- the service ----------------------------------------------------------------

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.node.host.set_stream_handler(protocols.HEARTBEAT, self._serve_link)
            nursery.start_soon(self._down_receive_loop, await self.node.pubsub.subscribe(self.topic))
            while True:
                try:
                    self._upkeep_round()
                except Exception:  # upkeep must outlive any one failed round
                    logger.exception("liveness upkeep round failed")
                self._wake = trio.Event()
                with trio.move_on_after(self.config.interval):
                    await self._wake.wait()

    def _upkeep_round(self) -> None:
        now = trio.current_time()
        live = self.members.live.peer_ids()
        deny = self.node.deny
        targets = watch_targets(self.me, live, watch_all_up_to=self.config.watch_all_up_to,
                                neighbours=self.config.neighbours) - deny
        self._targets = targets
        for peer, link in list(self.links.items()):
            # (A link is reset once: it stays listed until its reader ends, and rounds come at
            # every membership change. Resetting it again each round, 100 nodes in one process
            # reset 6,600 streams while 1,000 links were dropped.)
            if link.closed:
                continue
            if peer in deny:  # cut off (a netlab partition): the link ends, the peer goes down
                link.closed = True
                self._nursery.start_soon(_reset, link.stream)
            elif peer not in targets and not link.remote_watching and now - link.opened_at > 2 * self.config.interval:
                # A link opened only to check a report, or to a peer that left both ends' targets
                # (the ring moved): its watchers are others now. Dropped quietly, and unlisted
                # at once (its reader may wait long for a frame that never comes).
                link.closed = link.replaced = True
                del self.links[peer]
                self._nursery.start_soon(_reset, link.stream)
        for peer in list(self._wanted_since):
            if peer not in targets:
                del self._wanted_since[peer]
        for peer in targets:
            if peer in self.links or peer in self._opening:
                continue
            since = self._wanted_since.setdefault(peer, now)
            # The lower peer ID opens; the other waits a little for it, so one link serves
            # a pair. (Either opens at once when the other might not know it yet.)
            if self.me < peer or now - since > 2 * self.config.interval:
                self._start_open(peer)
        for peer, (due, _) in list(self._retry.items()):
            if peer in self.members.live or self.members.last_record(peer) is None:
                del self._retry[peer]  # back, or its last record expired: nothing to retry
            elif due <= now and peer not in deny and peer not in self._opening and peer not in self.links:
                self._start_open(peer)

    def _start_open(self, peer: str) -> None:
        self._opening.add(peer)
        self._nursery.start_soon(self._open_link, peer)

    async def _open_link(self, peer: str) -> bool:
        """Dial ``peer`` if need be and run a link with it; True if the link came up."""
        try:
            stream = None
            with trio.move_on_after(self.config.reopen_timeout):
                try:
                    stream = await self._dial_link(peer)
                except Exception as exc:  # a failed dial, whatever py-libp2p raises, is only a failure
                    logger.debug("heartbeat link to %s: %r", peer, exc)
            if stream is None:
                self._note_retry(peer)
                since = self._wanted_since.get(peer)
                if (peer in self.members.live and since is not None
                        and trio.current_time() - since > self.config.dead_after and peer not in self.links):
                    # A member we were to watch and have never reached for the silence bound:
                    # as silent as a frozen one (it froze before any link to it was opened).
                    self._nursery.start_soon(self._declare_down, peer)
                return False
        finally:
            self._opening.discard(peer)
        # (A down peer stays due for retries until its record arrives on the link: a peer
        # that takes the stream and then resets it, one still partitioned from us, is tried again.)
        link = _Link(peer, stream, outbound=True)
        if not await self._register(link):
            return peer in self.links
        self._nursery.start_soon(self._run_link, link)
        return True

    async def _dial_link(self, peer: str):
        if peer in self.node.deny:
            return None
        pid = ID.from_base58(peer)
        if pid not in self.node.connected_peers():
            addrs = self._addrs_of(peer)
            if not addrs or not await self.node.connect(PeerInfo(pid, addrs)):
                return None
        try:
            return await self.node.open_stream(pid, [protocols.HEARTBEAT])
        except Exception as exc:
            logger.debug("heartbeat stream to %s: %r", peer, exc)
            return None

    def _addrs_of(self, peer: str):
        import multiaddr

        try:
            addrs = list(self.node.host.get_peerstore().addrs(ID.from_base58(peer)))
        except Exception:  # py-libp2p raises PeerStoreError for addresses past their TTL
            addrs = []
        if addrs:
            return addrs
        signed = self.members.live.get(peer) or self.members.last_record(peer)
        if signed is None:
            return []
        suffix = multiaddr.Multiaddr(f"/p2p/{peer}")
        out = []
        for a in signed.record.addrs:
            try:
                out.append(multiaddr.Multiaddr(a).decapsulate(suffix))
            except Exception:
                pass
        return out

    def _note_retry(self, peer: str) -> None:
        """A down peer is tried again later, less and less often (a live one every round)."""
        if peer in self.members.live:
            return
        _, last = self._retry.get(peer, (0.0, self.config.retry_min / 2))
        backoff = min(self.config.retry_max, last * 2)
        self._retry[peer] = (trio.current_time() + backoff * random.uniform(0.8, 1.2), backoff)

    async def _serve_link(self, stream) -> None:
        try:
            peer = str(stream.muxed_conn.peer_id)
        except Exception:
            peer = ""
        if not peer or peer in self.node.deny or (peer not in self.links and len(self.links) >= self.config.max_links
                                                   and peer not in self._wanted_since):
            await _reset(stream)
            return
        link = _Link(peer, stream, outbound=False)
        if await self._register(link):
            await self._run_link(link)

    async def _register(self, link: _Link) -> bool:
        """One link per pair of nodes. When both ends opened one at once, both keep the one
        the lower peer ID opened; otherwise the newer link replaces the older."""
        old = self.links.get(link.peer)
        if old is not None and not old.closed:
            def by_lower(x: _Link) -> bool:
                return (self.me < x.peer) == x.outbound

            if by_lower(old) and not by_lower(link):
                link.closed = link.replaced = True
                await _reset(link.stream)
                return False
            old.closed = old.replaced = True
            self._nursery.start_soon(_reset, old.stream)
        self.links[link.peer] = link
        return True

    async def _run_link(self, link: _Link) -> None:
        peer = link.peer
        self._wanted_since.pop(peer, None)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._send_loop, link)
                reason = await self._read_loop(link)
                nursery.cancel_scope.cancel()
        except Exception as exc:  # the stream died, or the peer sent something invalid
            reason = _describe(exc)
        finally:
            if self.links.get(peer) is link:
                del self.links[peer]
            if not link.closed:
                link.closed = True
                with trio.CancelScope(shield=True):
                    await _reset(link.stream)
        if not link.replaced:
            await self._link_lost(peer, reason, silent=reason == "silent")

    async def _send_loop(self, link: _Link) -> None:
        """Our record and a beat at once; then the end with the lower peer ID beats every
        interval and the other answers each beat (so an exchange is three wake-ups, not four)."""
        await self._send_state(link)
        if self.me > link.peer:
            return
        while True:
            await trio.sleep(self.config.interval * random.uniform(0.8, 1.2))
            await self._send_state(link)

    async def _send_state(self, link: _Link) -> None:
        """Our record if it changed since we last sent it on this link, then a beat."""
        own = self.members.live.get(self.me)
        if own is None:
            return
        if own.record.seq != link.sent_seq:
            await write_frame(link.stream, record_frame(own.to_bytes()))
            link.sent_seq = own.record.seq
        beat = Beat(link.sent_seq, self.members.live.digest(), self.certs_digest(), watching=link.peer in self._targets)
        await write_frame(link.stream, beat.to_frame())

    async def _read_loop(self, link: _Link) -> str:
        while True:
            frame = None
            with trio.move_on_after(self.config.dead_after):
                try:
                    frame = await read_frame(link.stream, MAX_LINK_FRAME)
                except ProtocolError as exc:
                    return str(exc)
            if frame is None:
                return "silent"
            if link.closed:
                return "replaced"
            link.last_heard = trio.current_time()
            if not frame:
                return "empty frame"
            if frame[0] == FRAME_RECORD:
                self._take_record(link, bytes(frame[1:]))
            elif frame[0] == FRAME_RELAY:
                self._take_relayed(link, bytes(frame[1:]))
            elif frame[0] == FRAME_BEAT:
                self._take_beat(link, Beat.from_frame(bytes(frame)))
                if self.me > link.peer:  # we answer the other end's beats
                    await self._send_state(link)
            else:
                raise InvalidLivenessMessage("unknown frame type")

    def _take_record(self, link: _Link, data: bytes) -> None:
        if not data:
            return
        signed = self.members.validate_bytes(data)
        if signed.peer_id != link.peer:
            raise InvalidRecordError("heartbeat link sent another node's record")
        self.members.accept(signed, direct=True)
        self._retry.pop(link.peer, None)

    def _take_relayed(self, link: _Link, data: bytes) -> None:
        """Another node's record pushed on by the peer. One our clock refuses (expired on the
        way, or from a node whose clock runs ahead) is dropped; a forged or malformed one ends
        the link like any invalid frame: the peer should have checked it before relaying."""
        try:
            signed = self.members.validate_bytes(data)
        except StaleRecordError:
            return
        if signed.peer_id in self.node.deny:  # cut off from us (netlab partition), as on gossip
            return
        if self.members.accept(signed) is not None:
            self.relay([signed], source=link.peer)

    def _take_beat(self, link: _Link, beat: Beat) -> None:
        link.remote_watching = beat.watching
        self._compare(link, "members", beat.members, self.members.live.digest(),
                      lambda: self.members.pull_from(ID.from_base58(link.peer)))
        self._compare(link, "certs", beat.certs, self.certs_digest(), lambda: self.pull_certs(link.peer))

    def _compare(self, link: _Link, what: str, remote: bytes, local: bytes, pull) -> None:
        if remote == local:
            link.mismatch.discard(what)
            return
        # Gossip usually closes a gap within a beat; a difference still there at the next beat
        # is pulled for, once per pair of digests. (Not "the same remote digest twice": while
        # nodes keep joining, the peer's digest changes between beats, and a node whose own
        # record copies missed some joins never pulled: 50 nodes in one process stayed at live
        # sets of 36-47 for a minute, with 0-1 pulls at the nodes that knew least.)
        # One pull of each kind at a time: on a saturated machine, pulls from every link at once
        # (each a whole live set) only changed more digests and asked for more pulls.
        seen_before = what in link.mismatch
        link.mismatch.add(what)
        if seen_before and what not in self._pulling and link.pulled.get(what) != (remote, local):
            link.pulled[what] = (remote, local)
            self.counters["pulls_by_digest"] += 1
            self._pulling.add(what)

            async def pull_once() -> None:
                try:
                    await pull()
                except Exception as exc:
                    # Failed (the peer busy or gone): the same pair may be pulled for again.
                    # Kept, a node whose pulls from every link failed under load while joining
                    # lacked a member for as long as the digests stayed the same.
                    logger.debug("%s pull from %s failed: %r", what, link.peer, exc)
                    if link.pulled.get(what) == (remote, local):
                        del link.pulled[what]
                finally:
                    self._pulling.discard(what)

            self._nursery.start_soon(pull_once)


def _describe(exc: BaseException) -> str:
    """The innermost exception of a (nested) group: a log line that says what happened."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


async def _reset(stream) -> None:
    with trio.move_on_after(1):
        try:
            await stream.reset()
        except Exception:
            pass

