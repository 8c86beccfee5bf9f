"""The node's libp2p stack: host (TCP + Noise + Yamux), Kademlia DHT (server), GossipSub.

``open_host`` is an async context manager: on entry the host listens, the DHT
and pubsub services run in its own nursery, the bootstrap peers are dialled
and a first routing-table refresh has been done; on exit everything stops.
The routing table is refreshed on our own timer (the library's is 600 s), and
peers the DHT finds are dialled so that a node told one bootstrap address
comes to know, and connect to, the rest of the network.

The running host and its upkeep (``NodeHost``: dials, refreshes, trimming) are in
p2p/node_host.py; this module builds the stack (host, GossipSub) and runs it.
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.network.config import ConnectionConfig
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service
from libp2p.transport.tcp.tcp import TCP

from p2pwalrus.p2p.node_host import (  # noqa: F401  (re-exported: their old home)
    _LONG_LIVED, HEARTBEAT_INTERVAL, HostTimings, NodeHost, open_stream, parse_peer_addr,
)
from p2pwalrus.p2p.patches import fastpath, hardening
from p2pwalrus.p2p.task_group import task_group

# The DHT and GossipSub are a node's only (a client process builds a bare host): imported
# where a node's stack is built, so that a CLI command does not load them (issue 14).
if TYPE_CHECKING:
    from libp2p.pubsub.gossipsub import GossipSub

logger = logging.getLogger(__name__)



# py-libp2p pings over every Yamux connection every 30 s to measure its RTT (read at each
# round). Our heartbeat links already watch the peers that matter, and on an idle network
# those pings were a wake-up per connection and half-minute: once in five minutes will do.
YAMUX_RTT_INTERVAL = 300


def build_host(keypair: KeyPair, listen_addrs: Sequence[multiaddr.Multiaddr],
               timings: HostTimings | None = None) -> IHost:
    """A libp2p host with TCP, Noise and Yamux only (no Mplex, QUIC, TLS, secio, plaintext)."""
    fastpath.enable()  # wire-compatible speed-ups of py-libp2p 0.8.1's Yamux/Noise path (DESIGN 6)
    hardening.apply()  # a failing handler of libp2p's own protocols resets its stream, not the node
    import libp2p.stream_muxer.yamux.yamux as yamux_module

    yamux_module.RTT_MEASURE_INTERVAL = YAMUX_RTT_INTERVAL
    noise = NoiseTransport(keypair, noise_privkey=create_new_x25519_key_pair().private_key)
    return new_host(
        key_pair=keypair,
        sec_opt={NOISE_PROTOCOL_ID: noise},
        muxer_opt={YAMUX_PROTOCOL_ID: Yamux},
        transports=[TCP()],
        listen_addrs=listen_addrs,
        # 1 connection per peer: the dialer otherwise waits out a 250 ms timer (DESIGN 6)
        connection_config=ConnectionConfig(
            max_connections_per_peer=1,
            low_watermark=(timings or HostTimings()).low_watermark,
            high_watermark=(timings or HostTimings()).high_watermark,
            min_connections=(timings or HostTimings()).min_connections,
            max_connections=(timings or HostTimings()).max_connections,
        ),
    )


# A forwarder relays every message of a topic to us: 10 a second (py-libp2p's default, a
# per-peer-and-topic flood guard) dropped records while many nodes joined at once, and would drop
# certificates of a busy gateway. Validators (signatures, sizes) stay the real guard.
MAX_MESSAGES_PER_TOPIC_PER_SECOND = 200.0
OPPORTUNISTIC_GRAFT_TICKS = 60  # go-libp2p's: opportunistic grafting once a minute, not every heartbeat
GOSSIP_EVERY_TICKS = 3  # IHAVE on one heartbeat in three: with a 3-heartbeat window, each id once


@functools.cache
def steady_gossipsub_class() -> type:
    """py-libp2p 0.8.1's GossipSub without the extras that churn meshes (local decisions
    only; the wire is unchanged). Each heartbeat, every topic's mesh swapped its worst peer
    for a better-scored one and grafted opportunistically (go-libp2p does the latter once a
    minute): while nodes joined, thousands of GRAFT/PRUNE a minute, and messages in flight
    lost their path. Adaptive gossip (off in build_gossipsub) also moved the degree bounds
    and the heartbeat with a "network health" score. A function: clients never import GossipSub."""
    from libp2p.pubsub.gossipsub import GossipSub

    class SteadyGossipSub(GossipSub):
        _ticks = 0

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if counters_never_decay(self.scorer.params):
                # Its heartbeat walks every peer's counters to multiply them by 1.0: 0.3 ms
                # a heartbeat at 60 nodes, for nothing.
                self.scorer.on_heartbeat = lambda *args, **kwargs: None

        async def _maintain_mesh_quality(self, topic: str) -> None:
            return

        def mesh_heartbeat(self):
            self._ticks += 1
            return super().mesh_heartbeat()

        def gossip_heartbeat(self):
            # IHAVE announces the ids seen in the last `gossip_window` (3) heartbeats; sent on
            # every heartbeat it names each id three times. Every third heartbeat names each once.
            if self._ticks % GOSSIP_EVERY_TICKS:
                return defaultdict(dict)
            return super().gossip_heartbeat()

        def _perform_opportunistic_grafting(self, topic, peers_to_graft) -> int:
            if self._ticks % OPPORTUNISTIC_GRAFT_TICKS:
                return 0
            return super()._perform_opportunistic_grafting(topic, peers_to_graft)

    return SteadyGossipSub


@functools.cache
def quiet_kad_dht_class() -> type:
    """py-libp2p 0.8.1's KadDHT whose maintenance loop leaves the routing-table refresh to us.

    Stock's loop refreshes the table (a lookup of our own ID and one per non-empty bucket,
    each querying up to k peers and dialling those not connected) as the node starts and
    then every 600 s, on no jitter: every node of a testnet started together refreshed in the
    same seconds (the 20-node testnet idle at 0.4% a node went to 59% together at 600 s), and
    every newcomer dialled peers it did not need. NodeHost._upkeep refreshes on our timer,
    jittered. Republishing and expiring stored values stay, every 600 s +-20%. The wire is
    unchanged."""
    import random

    from libp2p.kad_dht.kad_dht import ROUTING_TABLE_REFRESH_INTERVAL, KadDHT

    class QuietKadDHT(KadDHT):
        async def _run_main_loop(self) -> None:
            while self.manager.is_running:
                await trio.sleep(ROUTING_TABLE_REFRESH_INTERVAL * random.uniform(0.8, 1.2))
                try:
                    await self.provider_store._republish_provider_records()
                    await self.value_store._republish_records(self.peer_routing)
                    self.value_store.cleanup_expired()
                    self.provider_store.cleanup_expired()
                except Exception:  # upkeep must outlive any one failed round
                    logger.exception("DHT maintenance round failed")

    return QuietKadDHT


def counters_never_decay(params) -> bool:
    """Whether a GossipSub PeerScorer's decay factors are all 1 (ScoreParams' defaults, ours)."""
    topic = (params.p1_time_in_mesh, params.p2_first_message_deliveries, params.p3_mesh_message_deliveries,
             params.p4_invalid_messages)
    return all(t.decay == 1.0 for t in topic) and params.p5_behavior_penalty_decay == 1.0 \
        and params.p6_appl_slack_decay == 1.0


def build_gossipsub(heartbeat: float = HEARTBEAT_INTERVAL, degree: int = 6) -> "GossipSub":
    """GossipSub with a 1 s heartbeat, so meshes form quickly on small networks.

    Each node receives each message about once per mesh peer (D to 2 D): many nodes
    sharing one CPU (netlab inproc) run with a smaller D.
    """
    from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11

    return steady_gossipsub_class()(
        protocols=[PROTOCOL_ID_V11, PROTOCOL_ID],
        degree=degree,
        degree_low=max(1, degree - 2),
        degree_high=2 * degree,
        heartbeat_initial_delay=0.1,
        heartbeat_interval=heartbeat,
        adaptive_gossip_enabled=False,
        max_messages_per_topic_per_second=MAX_MESSAGES_PER_TOPIC_PER_SECOND,
    )


@asynccontextmanager
async def open_host(
    keypair: KeyPair,
    listen_addrs: list[str],
    bootstrap: list[str],
    *,
    timings: HostTimings | None = None,
) -> AsyncIterator[NodeHost]:
    """Run a node's libp2p stack; yield a NodeHost once it listens and has bootstrapped.

    ``listen_addrs`` like ``/ip4/127.0.0.1/tcp/0`` (port 0: the OS picks one,
    ``NodeHost.listen_addrs()`` tells which). ``bootstrap`` holds full
    multiaddrs with ``/p2p/<peer id>``; unreachable ones are logged and retried
    on every refresh, never fatal.
    """
    timings = timings or HostTimings()
    maddrs = [multiaddr.Multiaddr(a) for a in listen_addrs]
    boot = [parse_peer_addr(a) for a in bootstrap]
    from libp2p.kad_dht.kad_dht import DHTMode
    from libp2p.pubsub.pubsub import Pubsub

    host = build_host(keypair, maddrs, timings)
    dht = quiet_kad_dht_class()(host, DHTMode.SERVER)
    gossipsub = build_gossipsub(timings.gossip_heartbeat, timings.gossip_degree)
    pubsub = Pubsub(host, gossipsub)
    node = NodeHost(host, dht, pubsub, gossipsub, timings)
    node.bootstrap_peers = [b for b in boot if b.peer_id != host.get_id()]
    node.is_bootstrap = len(node.bootstrap_peers) < len(boot)
    try:
        async with host.run(listen_addrs=maddrs):
            async with background_trio_service(dht), background_trio_service(pubsub), background_trio_service(gossipsub):
                await pubsub.wait_until_ready()
                async with task_group() as nursery:
                    if node.bootstrap_peers:
                        # Only the bootstrap peers now: the membership pull that follows tells a
                        # newcomer every member's address, and peers enter our routing table as we
                        # dial them or they query us. Kademlia's join lookup dialled about 20
                        # peers per newcomer, each a handshake, identify and GossipSub hello on
                        # both ends: most of a network's CPU while many nodes join at once.
                        await node.connect_bootstrap(background=nursery)
                    nursery.start_soon(node._upkeep)
                    nursery.start_soon(node._trim_loop)
                    yield node
    finally:
        await _close_listeners(host)


async def _close_listeners(host: IHost) -> None:
    """py-libp2p 0.8.1 serves TCP from a trio system task (SO_REUSEPORT) that only
    ``Listener.close()`` stops, and the swarm's own close is cancelled with the host. A host
    cancelled in-process (a netlab kill) kept accepting on its port: a node restarted there
    shared the port with it, and clients landing on the dead one lost their connection."""
    with trio.CancelScope(shield=True), trio.move_on_after(5):
        for listener in list(host.get_network().listeners.values()):
            try:
                await listener.close()
            except Exception as exc:
                logger.debug("closing a listener failed: %r", exc)
