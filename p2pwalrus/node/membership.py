"""Membership service: publish our signed node record, keep the live set of storage nodes.

- Publishes a fresh signed record on GossipSub topic ``/p2pwalrus/<network>/nodes/1``
  when it starts, when asked (a peer reported us down) and every ``publish_interval``
  as a rare backstop (records live ``record_lifetime``), and puts it in the DHT under
  ``dht_record_key(network, peer id)`` (a validator is registered for the
  ``p2pwalrus`` namespace). Who is up is learnt from held connections (liveness.py),
  which marks members down; nothing is re-sent on a short timer.
- A GossipSub topic validator rejects bad records at the first hop (oversized,
  bad signature, wrong network, expired, or not published by their own node).
- Anti-entropy: ``/p2pwalrus/members/1.0.0`` answers with every live signed
  record, so a new node or a client pulls the membership instead of waiting
  for gossip; liveness pulls from a peer whose live-set digest differs from ours.
  Each pulled record is validated on its own.
- Changes (joined / left / updated) go to every channel from ``subscribe()``,
  and ``changed`` (a trio.Event, replaced after each batch) wakes waiters.

Publishing, the DHT copy and the pull are in node/membership_gossip.py; this module keeps
the live set and its changes.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import multiaddr
import trio
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID
from libp2p.records.utils import InvalidRecordType
from libp2p.records.validator import Validator

import p2pwalrus
from p2pwalrus.core.records import (
    MAX_RECORD_SIZE,
    InvalidRecordError,
    LiveSet,
    MembershipChange,
    NodeRecord,
    SignedNodeRecord,
    sign_record,
)
from p2pwalrus.errors import StaleRecordError
from p2pwalrus.p2p.host import NodeHost
from p2pwalrus.p2p.task_group import task_group
from ..core import protocols
from .membership_gossip import DHT_NAMESPACE, _MembershipSpread, dht_record_key  # noqa: F401

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MembershipConfig:
    """Membership timings and bounds (seconds, counts, bytes), chosen in one place."""

    network: str
    capacity: int = 0
    version: str = p2pwalrus.__version__
    publish_interval: float = 1200.0  # re-sign our record this often though unchanged (+- jitter)
    publish_jitter: float = 0.2
    record_lifetime: float = 3600.0  # expires_at - issued_at of the records we sign
    # Put our record in the DHT every N publishes, at a random phase (publishes are rare now).
    dht_put_every: int = 1
    dht_put_timeout: float = 10.0
    # The first put waits a random part of this: a put is a lookup that dials about 20 peers,
    # and nobody needs a newcomer's record in the DHT within seconds (members pull and gossip
    # records); at once, a burst of joins paid for every newcomer's put together.
    dht_first_put_within: float = 1200.0
    pull_timeout: float = 10.0  # one whole anti-entropy pull
    serve_timeout: float = 10.0  # answering one pull
    max_pull_records: int = 4096
    pull_interval: float = 0.0  # pull from a random member this often; 0: only by digest (liveness.py)
    lonely_pull_interval: float = 5.0  # pull this often while we know no other member
    max_members: int = 10_000


CHECKED_RECORDS_KEPT = 4096  # records whose signature was checked, remembered (oldest dropped)


class _DHTRecordValidator(Validator):
    """DHT validator for ``dht_record_key(network, peer id)`` keys."""

    def __init__(self, network: str):
        self.network = network

    def validate(self, key: str, value: bytes) -> None:
        try:
            signed = SignedNodeRecord.from_bytes(value, network=self.network, now=time.time())
        except InvalidRecordError as exc:
            raise InvalidRecordType(exc.reason) from None
        if key != dht_record_key(self.network, signed.peer_id):
            raise InvalidRecordType("DHT key does not match the record's network and peer ID")

    def select(self, key: str, values: list[bytes]) -> int:
        def seq(v: bytes) -> int:
            try:
                return SignedNodeRecord.from_bytes(v, network=self.network, now=time.time()).record.seq
            except InvalidRecordError:
                return -1

        seqs = [seq(v) for v in values]
        return seqs.index(max(seqs))


class Membership(_MembershipSpread):
    """The running membership service of one node (from ``open_membership``)."""

    def __init__(self, node: NodeHost, keypair: KeyPair, config: MembershipConfig):
        self.node = node
        self.keypair = keypair
        self.config = config
        self.topic = protocols.nodes_topic(config.network)
        self.live = LiveSet(config.record_lifetime, config.max_members)
        self._departed: dict[str, SignedNodeRecord] = {}  # last records of members marked down
        # peer -> (its record's addrs, parsed for the peerstore): a record's addrs rarely change,
        # and parsing them took 0.4 ms a record (most of accepting one)
        self._parsed_addrs: dict[str, tuple[tuple[str, ...], ID, list]] = {}
        self._publish_now = trio.Event()
        self.changed = trio.Event()
        self._seq = time.time_ns()  # survives restarts without a counter file
        self._publish_count = 0
        self._dht_put_every = max(1, config.dht_put_every)
        self._dht_put_phase = random.randrange(self._dht_put_every)
        self._dht_put_due = trio.Event()
        self._subscribers: list[trio.MemorySendChannel[MembershipChange]] = []
        self._wake_expiry = trio.Event()
        self.rejected = 0  # gossip messages refused by the validator
        self._checked: dict[bytes, SignedNodeRecord] = {}  # record bytes -> checked record (validate_bytes)
        # A whole live set pulled from a peer at least once. Until then the node pulls as if
        # alone: a newcomer whose first pull failed (its bootstrap peer busy) but that heard a
        # few records by gossip was no longer alone, never pulled again, and lacked the rest.
        self.synced = False
        # Called with the records a pull taught us once we were synced (records gossip missed
        # here, so likely elsewhere too): liveness pushes them on along its links.
        self.on_missed_by_gossip: Callable[[list[SignedNodeRecord]], None] = lambda records: None

    # --- local record -------------------------------------------------------

    @property
    def peer_id(self) -> str:
        return str(self.node.peer_id)

    def make_record(self, now: float | None = None) -> SignedNodeRecord:
        now = time.time() if now is None else now
        self._seq += 1
        record = NodeRecord(
            network=self.config.network,
            peer_id=self.peer_id,
            addrs=tuple(self.node.listen_addrs()),
            capacity=self.config.capacity,
            version=self.config.version,
            issued_at=now,
            expires_at=now + self.config.record_lifetime,
            seq=self._seq,
        )
        return sign_record(self.keypair, record)

    # --- live set and change notification -----------------------------------

    def subscribe(self, buffer: int = 256) -> trio.MemoryReceiveChannel[MembershipChange]:
        """A channel of membership changes. A subscriber that falls ``buffer`` behind loses changes
        (logged); re-read ``live`` after ``changed`` fires if you must not miss any."""
        send, recv = trio.open_memory_channel[MembershipChange](buffer)
        self._subscribers.append(send)
        return recv

    def _emit(self, changes: list[MembershipChange]) -> None:
        if not changes:
            return
        for change in changes:
            logger.debug("member %s %s", change.peer_id, change.kind.value)
            for send in list(self._subscribers):
                try:
                    send.send_nowait(change)
                except trio.WouldBlock:
                    logger.warning("membership subscriber is behind; dropped a change")
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._subscribers.remove(send)
        done, self.changed = self.changed, trio.Event()
        done.set()

    def accept(self, signed: SignedNodeRecord, now: float | None = None, *, direct: bool = False) -> MembershipChange | None:
        """Offer an already-validated record to the live set (``direct``: from the node itself
        on a link we hold, which lifts a down mark)."""
        now = time.time() if now is None else now
        change = self.live.offer(signed, now, direct=direct)
        if change is not None:
            self._departed.pop(signed.peer_id, None)
            if signed.peer_id != self.peer_id:
                self._remember_addrs(signed.record)
            self._emit([change])
            self._wake_expiry.set()
        return change

    def mark_down(self, peer_id: str, seq: int | None = None) -> MembershipChange | None:
        """``peer_id`` is gone (liveness found its links dead): drop it, refuse its records up
        to ``seq``, and keep its last record so that it can be tried again."""
        signed = self.live.get(peer_id)
        change = self.live.mark_down(peer_id, seq)
        if change is not None:
            if signed is not None:
                self._departed[peer_id] = signed
                if len(self._departed) > self.config.max_members:
                    self._departed.pop(next(iter(self._departed)))
            self._emit([change])
        return change

    def last_record(self, peer_id: str) -> SignedNodeRecord | None:
        """The last record of a member marked down, while it has not expired."""
        signed = self._departed.get(peer_id)
        if signed is not None and signed.record.expires_at <= time.time():
            del self._departed[peer_id]
            return None
        return signed

    def departed(self) -> list[str]:
        """Members marked down whose last record has not expired (they may come back)."""
        return [p for p in list(self._departed) if self.last_record(p) is not None]

    def request_publish(self) -> None:
        """Sign and gossip a fresh record now (e.g. to refute a report that we are down)."""
        self._publish_now.set()

    def _remember_addrs(self, record: NodeRecord) -> None:
        try:
            known = self._parsed_addrs.get(record.peer_id)
            if known is not None and known[0] == tuple(record.addrs):
                _, peer, addrs = known
            else:
                peer = ID.from_base58(record.peer_id)
                own = multiaddr.Multiaddr(f"/p2p/{record.peer_id}")
                addrs = [multiaddr.Multiaddr(a).decapsulate(own) for a in record.addrs]
                self._parsed_addrs.pop(record.peer_id, None)
                if len(self._parsed_addrs) >= self.config.max_members:
                    del self._parsed_addrs[next(iter(self._parsed_addrs))]
                self._parsed_addrs[record.peer_id] = (tuple(record.addrs), peer, addrs)
            self.node.host.get_peerstore().add_addrs(peer, addrs, int(self.config.record_lifetime))
        except Exception as exc:  # a bad multiaddr in a validly signed record: ignore the addrs
            logger.debug("ignoring addrs of %s: %s", record.peer_id, exc)

    def validate_bytes(self, data: bytes, now: float | None = None) -> SignedNodeRecord:
        """Parse and fully check a record (core/records.py); the same bytes seen again (the
        node's GossipSub validators and its receive loop each check every record, and pulls
        bring records gossip brought) are only checked for expiry: one signature check each."""
        now = time.time() if now is None else now
        data = bytes(data)
        signed = self._checked.get(data)
        if signed is not None:
            if signed.record.expires_at <= now:
                raise StaleRecordError("record expired")
            return signed
        signed = SignedNodeRecord.from_bytes(data, network=self.config.network, now=now, max_size=MAX_RECORD_SIZE)
        if len(self._checked) >= CHECKED_RECORDS_KEPT:
            del self._checked[next(iter(self._checked))]
        self._checked[data] = signed
        return signed


@asynccontextmanager
async def open_membership(node: NodeHost, keypair: KeyPair, config: MembershipConfig) -> AsyncIterator[Membership]:
    """Run the membership service on a started NodeHost; yield it after the first publish and pull."""
    m = Membership(node, keypair, config)
    node.dht.register_validator(DHT_NAMESPACE, _DHTRecordValidator(config.network))
    node.pubsub.set_topic_validator(m.topic, m._gossip_validator, is_async_validator=False)
    node.host.set_stream_handler(protocols.MEMBERS, m._serve_pull)
    subscription = await node.pubsub.subscribe(m.topic)
    try:
        async with task_group() as nursery:
            nursery.start_soon(m._receive_loop, subscription)
            nursery.start_soon(m._expiry_loop)
            await m.pull_from_bootstrap()
            nursery.start_soon(m._dht_put_loop)
            nursery.start_soon(m._publish_loop)
            nursery.start_soon(m._pull_loop)
            yield m
    finally:
        for send in m._subscribers:
            send.close()
        node.pubsub.remove_topic_validator(m.topic)
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            try:
                await node.pubsub.unsubscribe(m.topic)
            except Exception:
                pass
