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
"""

from __future__ import annotations

import base64
import hashlib
import logging
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import multiaddr
import trio
from libp2p.abc import INetStream
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
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
from p2pwalrus.errors import ProtocolError
from p2pwalrus.p2p.framing import encode_frames, read_frame, write_frame
from p2pwalrus.p2p.host import NodeHost
from p2pwalrus.p2p.task_group import task_group
from ..core import protocols

logger = logging.getLogger(__name__)

DHT_NAMESPACE = "p2pwalrus"
_PULL_REQUEST = b"\x01"  # request frame: version 1, "all live records"


def dht_record_key(network: str, peer_id: str) -> str:
    """``/p2pwalrus/<base32 of a 20-byte hash of network and peer id>`` (43 bytes).

    Kept under 50 bytes on purpose: py-libp2p 0.8.1 servers ignore FIND_NODE
    for longer keys that are not multihashes (kad_dht.py:696-711), so a longer
    key would only ever reach the peers already in our routing table.
    """
    digest = hashlib.blake2b(f"{network}/nodes/{peer_id}".encode(), digest_size=20).digest()
    return f"/{DHT_NAMESPACE}/{base64.b32encode(digest).decode().lower()}"


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
    dht_first_put_within: float = 300.0
    pull_timeout: float = 10.0  # one whole anti-entropy pull
    serve_timeout: float = 10.0  # answering one pull
    max_pull_records: int = 4096
    pull_interval: float = 0.0  # pull from a random member this often; 0: only by digest (liveness.py)
    lonely_pull_interval: float = 5.0  # pull this often while we know no other member
    max_members: int = 10_000


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


class Membership:
    """The running membership service of one node (from ``open_membership``)."""

    def __init__(self, node: NodeHost, keypair: KeyPair, config: MembershipConfig):
        self.node = node
        self.keypair = keypair
        self.config = config
        self.topic = protocols.nodes_topic(config.network)
        self.live = LiveSet(config.record_lifetime, config.max_members)
        self._departed: dict[str, SignedNodeRecord] = {}  # last records of members marked down
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
            addrs = [multiaddr.Multiaddr(a).decapsulate(multiaddr.Multiaddr(f"/p2p/{record.peer_id}")) for a in record.addrs]
            self.node.host.get_peerstore().add_addrs(ID.from_base58(record.peer_id), addrs, int(self.config.record_lifetime))
        except Exception as exc:  # a bad multiaddr in a validly signed record: ignore the addrs
            logger.debug("ignoring addrs of %s: %s", record.peer_id, exc)

    def validate_bytes(self, data: bytes, now: float | None = None) -> SignedNodeRecord:
        return SignedNodeRecord.from_bytes(
            data, network=self.config.network, now=time.time() if now is None else now, max_size=MAX_RECORD_SIZE
        )

    # --- gossip ----------------------------------------------------------------

    def _gossip_validator(self, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        try:
            signed = self.validate_bytes(msg.data)
            if ID(msg.from_id).to_base58() != signed.peer_id:
                raise InvalidRecordError("record relayed as if published by another peer")
        except InvalidRecordError as exc:
            self.rejected += 1
            logger.info("rejected node record from %s: %s", forwarder, exc.reason)
            return False
        except Exception as exc:  # e.g. a malformed from_id
            self.rejected += 1
            logger.info("rejected node record from %s: %s", forwarder, exc)
            return False
        return True

    async def lookup(self, peer_id: str) -> SignedNodeRecord | None:
        """Find a node's record in the DHT (validated; None if absent or invalid)."""
        with trio.move_on_after(self.config.dht_put_timeout):
            value = await self.node.dht.get_value(dht_record_key(self.config.network, peer_id))
            if value is None:
                return None
            try:
                signed = self.validate_bytes(value)
            except InvalidRecordError:
                return None
            return signed if signed.peer_id == peer_id else None
        return None

    async def publish(self) -> SignedNodeRecord:
        """Sign a fresh record, take it into our own live set, gossip it (and put it in the DHT)."""
        signed = self.make_record()
        self.accept(signed)
        await self.node.pubsub.publish(self.topic, signed.to_bytes())
        if self._publish_count % self._dht_put_every == self._dht_put_phase:
            self._dht_put_due.set()
        self._publish_count += 1
        return signed

    async def _dht_put_loop(self) -> None:
        """Put our newest record in the DHT when a publish says it is due. Its own task: a put
        is a lookup that may wait on dead peers for seconds, and inline it held up the next
        publish past the live TTL, so every live set dropped a live node."""
        await trio.sleep(random.uniform(0, self.config.dht_first_put_within))
        while True:
            await self._dht_put_due.wait()
            self._dht_put_due = trio.Event()
            signed = self.live.get(self.peer_id)
            if signed is None:
                continue
            with trio.move_on_after(self.config.dht_put_timeout):
                try:
                    await self.node.dht.put_value(dht_record_key(self.config.network, self.peer_id), signed.to_bytes())
                except Exception as exc:
                    logger.info("DHT put of our node record failed: %s", exc)

    async def _publish_loop(self) -> None:
        cfg = self.config
        while True:
            self._publish_now = trio.Event()
            try:
                await self.publish()
            except Exception:  # keep publishing: one failed round must not stop the node
                logger.exception("publishing our node record failed")
            with trio.move_on_after(cfg.publish_interval * random.uniform(1 - cfg.publish_jitter, 1 + cfg.publish_jitter)):
                await self._publish_now.wait()

    async def _pull_loop(self) -> None:
        """Pull the live set while we know no other member (our first pull failed: the
        bootstrap peer was busy or down), from a bootstrap, connected or known peer; and,
        if ``pull_interval`` is set, from a random member that often. Otherwise pulls are
        driven by digests on the heartbeat links (liveness.py). Its own task: a pull from a
        dead member must not hold up our own publishing."""
        cfg = self.config
        while True:
            alone = len(self.live) <= 1
            if not alone and cfg.pull_interval <= 0:
                await self.changed.wait()
                continue
            period = cfg.lonely_pull_interval if alone else cfg.pull_interval
            if alone and cfg.pull_interval > 0:
                period = min(period, cfg.pull_interval)
            await trio.sleep(period * random.uniform(1 - cfg.publish_jitter, 1 + cfg.publish_jitter))
            peer = self._pull_candidate()
            if peer is None:
                continue
            # Alone, we have nothing better to do than wait for a busy peer's answer.
            timeout = cfg.pull_timeout * (3 if alone else 1)
            try:
                if peer in self.node.host.get_connected_peers() or await self.node.connect(self._peer_info(peer)):
                    await self.pull_from(peer, timeout=timeout)
            except Exception as exc:
                logger.debug("membership pull from %s failed: %r", peer, exc)

    def _pull_candidate(self) -> ID | None:
        """A random live member, most often a connected one; failing that any bootstrap,
        connected or otherwise known peer (a busy bootstrap peer may not answer for a while:
        any node can tell the live set)."""
        deny = self.node.deny
        members = [p for p in self.live.peer_ids() if p != self.peer_id and p not in deny]
        if members:
            return ID.from_base58(self.node.choose_peer(members))
        me = self.node.peer_id
        known = {b.peer_id for b in self.node.bootstrap_peers} | set(self.node.connected_peers())
        known |= set(self.node.dht.routing_table.get_peer_ids())
        others = [p for p in known if p != me and str(p) not in deny]
        return random.choice(others) if others else None

    def _peer_info(self, peer: ID):
        from libp2p.peer.peerinfo import PeerInfo

        for b in self.node.bootstrap_peers:
            if b.peer_id == peer:
                return b
        return PeerInfo(peer, self.node.host.get_peerstore().addrs(peer))

    async def _receive_loop(self, subscription) -> None:
        while True:
            msg = await subscription.get()
            try:
                self.accept(self.validate_bytes(msg.data))
            except InvalidRecordError:  # valid at the first check, expired since
                pass

    async def _expiry_loop(self) -> None:
        while True:
            self._wake_expiry = trio.Event()
            deadline = self.live.next_deadline()
            timeout = float("inf") if deadline is None else max(0.0, deadline - time.time())
            with trio.move_on_after(timeout):
                await self._wake_expiry.wait()
            self._emit(self.live.expire(time.time()))

    # --- anti-entropy pull -----------------------------------------------------

    async def _serve_pull(self, stream: INetStream) -> None:
        try:
            with trio.fail_after(self.config.serve_timeout):
                request = await read_frame(stream, 16)
                if request != protocols.MEMBERS_PULL_REQUEST:
                    raise ProtocolError("unknown membership request")
                records = [s.to_bytes() for s in self.live.signed_records()[: self.config.max_pull_records]]
                await stream.write(encode_frames([*records, b""]))  # an empty frame ends the list
            await stream.close()
        except Exception as exc:  # ProtocolError, TooSlowError, stream errors
            logger.info("serving a membership pull failed: %s", exc)
            with trio.move_on_after(1):
                try:
                    await stream.reset()
                except Exception:
                    pass

    async def pull_from(self, peer_id: ID, timeout: float | None = None) -> int:
        """Fetch all live records a peer knows; validate each; return how many were accepted."""
        accepted = 0
        held = {signed.to_bytes() for signed in self.live.signed_records()}
        with trio.fail_after(self.config.pull_timeout if timeout is None else timeout):
            stream = await self.node.open_stream(peer_id, [protocols.MEMBERS])
            try:
                await write_frame(stream, protocols.MEMBERS_PULL_REQUEST)
                for _ in range(self.config.max_pull_records + 1):
                    data = await read_frame(stream, MAX_RECORD_SIZE)
                    if not data:
                        break
                    if bytes(data) in held:  # the very record we hold (verified then): nothing to learn
                        continue
                    try:
                        signed = self.validate_bytes(data)
                    except InvalidRecordError as exc:
                        logger.info("pulled record from %s rejected: %s", peer_id, exc.reason)
                        continue
                    if self.accept(signed) is not None:
                        accepted += 1
                else:
                    raise ProtocolError(f"peer {peer_id} sent more than {self.config.max_pull_records} records")
            finally:
                await stream.close()
        return accepted

    async def pull_from_bootstrap(self) -> int:
        """Pull membership from every connected bootstrap peer (failures are logged)."""
        total = 0
        connected = set(self.node.connected_peers())
        for info in self.node.bootstrap_peers:
            if info.peer_id in connected:
                try:
                    total += await self.pull_from(info.peer_id)
                except Exception as exc:
                    logger.info("membership pull from %s failed: %s", info.peer_id, exc)
        return total


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
