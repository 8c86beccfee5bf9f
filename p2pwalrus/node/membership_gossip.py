"""How membership records spread (node/membership.py's Membership): GossipSub publishing and
its validator, the DHT copy of every record, and the anti-entropy pull
(``/p2pwalrus/members/1.0.0``) served and made.
"""

from __future__ import annotations

import base64
import hashlib
import math
import logging
import random
import time

import trio
from libp2p.abc import INetStream
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2

from p2pwalrus.core.records import MAX_RECORD_SIZE, InvalidRecordError, SignedNodeRecord
from p2pwalrus.errors import ProtocolError
from p2pwalrus.p2p.framing import FrameReader, encode_frames, read_frame, write_frame
from ..core import protocols

logger = logging.getLogger("p2pwalrus.node.membership")  # the log name these lines always had


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



class _MembershipSpread:
    """Membership's gossip, DHT and pull (uses its ``node``, ``keypair``, ``config``,
    ``live``, ``accept``, ``make_record`` and the loops' state set in its ``__init__``)."""


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

    async def _await_gossip_peer(self, timeout: float = 10.0) -> None:
        """Until a connected bootstrap peer can take our gossip (our pubsub stream to it open,
        its subscription to the topic heard), at most ``timeout``. A newcomer's first record
        published before then reached nobody: at 100 nodes its join then spread only by digest
        pulls on heartbeat links, a minute later."""
        pubsub = self.node.pubsub
        peers = self.node.connected_bootstrap_peers()
        if not peers:
            return
        with trio.move_on_after(timeout):  # the one deadline: the waits below have none of their own
            async with trio.open_nursery() as nursery:
                async def ready(peer: ID) -> None:
                    await pubsub.wait_for_peer(peer, math.inf)
                    await pubsub.wait_for_subscription(peer, self.topic, math.inf)
                    nursery.cancel_scope.cancel()

                for info in peers:
                    nursery.start_soon(ready, info.peer_id)

    async def _publish_loop(self) -> None:
        cfg = self.config
        await self._await_gossip_peer()
        while True:
            self._publish_now = trio.Event()
            try:
                await self.publish()
            except Exception:  # keep publishing: one failed round must not stop the node
                logger.exception("publishing our node record failed")
            with trio.move_on_after(cfg.publish_interval * random.uniform(1 - cfg.publish_jitter, 1 + cfg.publish_jitter)):
                await self._publish_now.wait()

    async def _pull_loop(self) -> None:
        """Pull the live set while we know no other member or have never pulled a whole live
        set (our first pull failed: the bootstrap peer was busy or down), from a member,
        bootstrap, connected or known peer; and,
        if ``pull_interval`` is set, from a random member that often. Otherwise pulls are
        driven by digests on the heartbeat links (liveness.py). Its own task: a pull from a
        dead member must not hold up our own publishing."""
        cfg = self.config
        while True:
            alone = len(self.live) <= 1 or not self.synced  # (not synced: our first pull failed)
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
                if alone and isinstance(exc, trio.TooSlowError):
                    # A connection that holds a pull this long may be dead on the other side
                    # (the swarm still lists it: every pull would wait on it again, and a node
                    # whose only connection it was stayed alone). The next try dials anew.
                    await self.node.close_connection(peer)

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
        learnt: list[SignedNodeRecord] = []
        was_synced = self.synced  # (a newcomer's first pulls teach it everything: nothing gossip missed)
        held = {signed.to_bytes() for signed in self.live.signed_records()}
        with trio.fail_after(self.config.pull_timeout if timeout is None else timeout):
            stream = await self.node.open_stream(peer_id, [protocols.MEMBERS])
            try:
                await write_frame(stream, protocols.MEMBERS_PULL_REQUEST)
                frames = FrameReader(stream)  # the records come in one write: a few reads, not 3 each
                for _ in range(self.config.max_pull_records + 1):
                    data = await frames.read_frame(MAX_RECORD_SIZE)
                    if not data:
                        self.synced = True
                        break
                    if bytes(data) in held:  # the very record we hold (verified then): nothing to learn
                        continue
                    try:
                        signed = self.validate_bytes(data)
                    except InvalidRecordError as exc:
                        logger.info("pulled record from %s rejected: %s", peer_id, exc.reason)
                        continue
                    if self.accept(signed) is not None:
                        learnt.append(signed)
                else:
                    raise ProtocolError(f"peer {peer_id} sent more than {self.config.max_pull_records} records")
            finally:
                if learnt and was_synced:
                    self.on_missed_by_gossip(learnt)
                await stream.close()
        return len(learnt)

    async def pull_from_bootstrap(self) -> int:
        """Pull membership from a connected bootstrap peer, the next one only if that failed
        (failures are logged): any one whole live set will do, and at 100 nodes joining, a
        pull from each of three bootstrap peers tripled the records every newcomer checked."""
        for info in self.node.connected_bootstrap_peers():
            try:
                return await self.pull_from(info.peer_id)
            except Exception as exc:
                logger.info("membership pull from %s failed: %s", info.peer_id, exc)
        return 0
