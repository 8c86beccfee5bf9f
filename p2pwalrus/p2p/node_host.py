"""A running node's libp2p host and its upkeep (what p2p/host.py's ``open_host`` yields):
dials, the bootstrap peers, routing-table refreshes, dialling peers the DHT finds, and
trimming idle connections above the high watermark; and the redialling ``open_stream``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr

from p2pwalrus.errors import NetworkConfigError

if TYPE_CHECKING:
    from libp2p.kad_dht.kad_dht import KadDHT
    from libp2p.pubsub.gossipsub import GossipSub
    from libp2p.pubsub.pubsub import Pubsub

logger = logging.getLogger("p2pwalrus.p2p.host")  # the log name these lines always had


# GossipSub's protocol IDs (libp2p.pubsub.gossipsub.PROTOCOL_ID, PROTOCOL_ID_V11; checked by
# tests/test_cli_startup.py): streams open for a connection's whole life
_LONG_LIVED = frozenset(["/meshsub/1.0.0", "/meshsub/1.1.0"])

BOOTSTRAP_STAGGER = 1.0  # s; a joining node dials the next bootstrap peer if the last is this slow
HEARTBEAT_INTERVAL = 1  # s; meshes graft on heartbeats: slower ones left gossip undelivered (flaky convergence)


@dataclass(frozen=True)
class HostTimings:
    """Every deadline and period of the host's own upkeep, in one place (seconds)."""

    dial_timeout: float = 5.0  # one dial, bootstrap or discovered peer
    refresh_interval: float = 30.0  # routing-table refresh period (library default: 600)
    refresh_timeout: float = 20.0  # one refresh lookup
    refresh_jitter: float = 0.2  # +-20% on each period, so nodes started together spread out
    max_dialled_peers: int = 50  # dial discovered peers only while connected to fewer than this
    # The swarm's own auto-connector dials peers from the peerstore up to between these
    # watermarks (library defaults 100/200); many nodes in one process need far fewer.
    low_watermark: int = 100
    high_watermark: int = 200
    min_connections: int = 50
    # Open inbound connections are capped at max_connections - min_connections (the library's
    # rule; patches/swarm.py makes a closed one give its place back).
    max_connections: int = 300
    gossip_heartbeat: float = HEARTBEAT_INTERVAL
    gossip_degree: int = 6
    dial_concurrency: int = 4
    # Above the high watermark, idle connections (only GossipSub's long-lived streams open, peer
    # not in a mesh) older than the grace period are closed, down to the auto-connector's target.
    # py-libp2p's own pruner never does: every connection carries a GossipSub stream.
    trim_interval: float = 10.0
    trim_grace: float = 20.0
    # Trim only above ``trim_above`` connections (0: the high watermark), down to ``trim_to``
    # (0: the auto-connector's target). Trimming right back to that target made every trimmed
    # peer dial again at once, and its new connections pushed others over: churn.
    trim_above: int = 0
    trim_to: int = 0


def parse_peer_addr(addr: str) -> PeerInfo:
    """Parse ``/ip4/.../tcp/.../p2p/<peer id>`` into a PeerInfo (NetworkConfigError if not)."""
    try:
        return info_from_p2p_addr(multiaddr.Multiaddr(addr))
    except Exception as exc:
        raise NetworkConfigError(f"bad peer address {addr!r}: expected /ip4/<ip>/tcp/<port>/p2p/<peer id> ({exc})") from exc


class NodeHost:
    """What ``open_host`` yields: the running libp2p host, DHT and pubsub of one node."""

    def __init__(self, host: IHost, dht: "KadDHT", pubsub: "Pubsub", gossipsub: "GossipSub", timings: HostTimings):
        self.host = host
        self.dht = dht
        self.pubsub = pubsub
        self.gossipsub = gossipsub
        self.timings = timings
        self.bootstrap_peers: list[PeerInfo] = []
        self.is_bootstrap = False  # this node is on its own bootstrap list
        self._refresh_now = trio.Event()
        self.refreshed = trio.Event()
        self.deny: set[str] = set()  # peer IDs never dialled (netlab partitions)  # set after each completed refresh, then replaced

    @property
    def peer_id(self) -> ID:
        return self.host.get_id()

    def listen_addrs(self) -> list[str]:
        """Full multiaddrs this node listens on, each ending in /p2p/<peer id>."""
        return [str(a) for a in self.host.get_addrs()]

    def connected_peers(self) -> list[ID]:
        return self.host.get_connected_peers()

    def connected_bootstrap_peers(self) -> list[PeerInfo]:
        """The bootstrap peers we hold a connection to, in the network file's order."""
        connected = set(self.connected_peers())
        return [info for info in self.bootstrap_peers if info.peer_id in connected]

    async def open_stream(self, peer_id: ID, protocols: Sequence[str]):
        """A new stream to ``peer_id``, redialling once if its connection went away."""
        if str(peer_id) in self.deny:
            raise ConnectionError(f"{peer_id} is on this node's deny-list")
        return await open_stream(self.host, peer_id, protocols, self.timings.dial_timeout)

    async def connect(self, peer: PeerInfo | str) -> bool:
        """Dial a peer (bounded by ``dial_timeout``) and add it to the DHT routing table."""
        info = parse_peer_addr(peer) if isinstance(peer, str) else peer
        if info.peer_id == self.peer_id or str(info.peer_id) in self.deny:
            return False
        # py-libp2p refuses for 60 s to redial a peer whose addresses all failed once; our
        # callers pace their own dials, and a node started before its bootstrap peer must
        # reach it when it comes back, not a minute later.
        self.host.get_network().unblock_peer(info.peer_id)
        try:
            with trio.fail_after(self.timings.dial_timeout):
                await self.host.connect(info)
        except Exception as exc:  # dial errors come in many library types
            logger.info("dial %s failed: %s", info.peer_id, exc)
            return False
        try:
            await self.dht.add_peer(info.peer_id, skip_server_mode_check=True)
        except Exception as exc:
            logger.debug("routing table refused %s: %s", info.peer_id, exc)
        return True

    async def connect_bootstrap(self, background: trio.Nursery | None = None) -> int:
        """Dial every bootstrap peer not connected yet; return how many are connected.

        With ``background``, return as soon as one is connected (or every dial failed): a
        node joining needs one bootstrap peer to pull the live set from, and one slow or dead
        bootstrap peer held its start for a whole dial timeout. A bootstrap peer itself lets
        its dials of every other bootstrap peer finish there: bootstrap peers started together
        each reached only some of the others, and a 5-node testnet stayed two networks, {0, 3,
        4} and {1, 2}, until the next refresh. Connected to each other, the bootstrap peers join
        whatever groups their newcomers formed. Any other node dials one."""
        connected = set(self.connected_peers())
        todo = [info for info in self.bootstrap_peers if info.peer_id not in connected]
        if background is None or len(todo) < len(self.bootstrap_peers):
            async with trio.open_nursery() as nursery:
                for info in todo:
                    nursery.start_soon(self.connect, info)
        else:
            # One after the other in random order, the next one only if the last has not
            # connected within a second (a bootstrap peer dials them all): a joining node needs
            # one, and every newcomer dialling every bootstrap peer loaded those with one
            # connection per member (most trimmed later), at 17 ms of CPU each.
            first, left = trio.Event(), [len(todo)]

            async def dial(info: PeerInfo, done: trio.Event) -> None:
                ok = False
                try:
                    ok = await self.connect(info)
                finally:
                    done.set()
                    left[0] -= 1
                    if ok or not left[0]:
                        first.set()

            for info in random.sample(todo, len(todo)):
                done = trio.Event()
                background.start_soon(dial, info, done)
                if self.is_bootstrap:
                    continue  # all at once
                with trio.move_on_after(BOOTSTRAP_STAGGER):
                    await done.wait()
                if first.is_set():
                    break
            await first.wait()
        return len(self.connected_bootstrap_peers())

    def request_refresh(self) -> None:
        """Ask the upkeep task to refresh the routing table now (e.g. after a join)."""
        self._refresh_now.set()

    async def refresh(self, *, joining: bool = False) -> None:
        """One upkeep round: redial bootstrap, refresh the routing table, dial what it found.

        ``joining``: only our own ID is looked up (Kademlia's join), which puts us in our
        neighbours' tables; the full refresh adds a lookup per non-empty bucket, each
        dialling up to k peers."""
        await self.connect_bootstrap()
        with trio.move_on_after(self.timings.refresh_timeout):
            try:
                if joining:
                    await self._lookup_self()
                else:
                    await self.dht.refresh_routing_table()
            except Exception as exc:
                logger.info("routing-table refresh failed: %s", exc)
        await self._dial_routing_table()
        done, self.refreshed = self.refreshed, trio.Event()
        done.set()

    async def _lookup_self(self) -> None:
        routing = self.dht.peer_routing
        for peer_id in await routing.find_closest_peers_network(self.peer_id.to_bytes()):
            addrs = self.host.get_peerstore().addrs(peer_id)
            if addrs:
                await self.dht.routing_table.add_peer(PeerInfo(peer_id, addrs))

    async def _dial_routing_table(self) -> None:
        connected = set(self.connected_peers())
        budget = self.timings.max_dialled_peers - len(connected)
        todo = [p for p in self.dht.routing_table.get_peer_infos()
                if p.peer_id not in connected and str(p.peer_id) not in self.deny][: max(budget, 0)]
        if not todo:
            return
        limiter = trio.CapacityLimiter(self.timings.dial_concurrency)

        async def dial(info: PeerInfo) -> None:
            async with limiter:
                await self.connect(info)

        async with trio.open_nursery() as nursery:
            for info in todo:
                nursery.start_soon(dial, info)

    def choose_peer(self, candidates: Sequence[str], explore: float = 0.25) -> str | None:
        """A random one of ``candidates`` (peer IDs), most often one already connected: no
        handshake, and no connection to trim later. With probability ``explore`` any of them,
        so that exchanges still reach beyond our neighbours and the overlay keeps mixing."""
        if not candidates:
            return None
        if random.random() >= explore:
            connected = {str(p) for p in self.connected_peers()}
            near = [p for p in candidates if p in connected]
            if near:
                return random.choice(near)
        return random.choice(candidates)

    def trim_candidates(self, now: float) -> list[ID]:
        """Peers whose connection may be closed now to get back under the high watermark:
        past the grace period, not in a GossipSub mesh, no stream open but GossipSub's."""
        t = self.timings
        conns = self.host.get_network().get_connections()
        if len(conns) <= (t.trim_above or t.high_watermark):
            return []
        in_mesh = set().union(*self.gossipsub.mesh.values())
        idle = []
        for conn in conns:
            peer = conn.muxed_conn.peer_id
            if peer in in_mesh or now - getattr(conn, "_created_at", now) < t.trim_grace:
                continue
            if all((s.get_protocol() or "") in _LONG_LIVED for s in conn.get_streams()):
                idle.append(peer)
        random.shuffle(idle)  # which ones stay is random: the overlay keeps mixing
        keep = t.trim_to or (t.low_watermark + t.high_watermark) // 2
        return idle[: max(0, len(conns) - keep)]

    async def close_connection(self, peer: ID) -> None:
        """Close our connection to ``peer`` (see ``close_connection``)."""
        await close_connection(self.host, peer)

    async def trim_connections(self) -> int:
        """Close idle connections above the high watermark; return how many were closed."""
        peers = self.trim_candidates(time.time())
        for peer in peers:
            await self.close_connection(peer)
        if peers:
            logger.debug("closed %d idle connections (above %d)", len(peers), self.timings.high_watermark)
        return len(peers)

    async def _trim_loop(self) -> None:
        while True:
            await trio.sleep(self.timings.trim_interval * random.uniform(0.8, 1.2))
            try:
                await self.trim_connections()
            except Exception:  # upkeep must outlive any one failed round
                logger.exception("trimming connections failed")

    async def _upkeep(self) -> None:
        t = self.timings
        while True:
            period = t.refresh_interval * random.uniform(1 - t.refresh_jitter, 1 + t.refresh_jitter)
            with trio.move_on_after(period):
                await self._refresh_now.wait()
            self._refresh_now = trio.Event()
            try:
                await self.refresh()
            except Exception:  # upkeep must outlive any one failed round
                logger.exception("routing-table upkeep round failed")


async def close_connection(host: IHost, peer_id: ID, timeout: float = 2.0) -> None:
    """Close the connection to a peer, waiting at most ``timeout`` seconds; a failure is only
    logged (the connection may be gone already)."""
    with trio.move_on_after(timeout):
        try:
            await host.disconnect(peer_id)
        except Exception as exc:
            logger.debug("closing the connection to %s: %r", peer_id, exc)


async def open_stream(host: IHost, peer_id: ID, protocols: Sequence[str], dial_timeout: float = 5.0):
    """A new stream to a peer; if that fails (its connection went away but the swarm still
    lists it, and would keep handing it out), drop the connection, dial again and retry once."""
    try:
        return await host.new_stream(peer_id, list(protocols))
    except Exception as first:
        addrs = host.get_peerstore().addrs(peer_id)
        if not addrs:
            raise first
        logger.info("stream to %s failed (%r); dialling again", peer_id, first)
        await close_connection(host, peer_id)
        with trio.fail_after(dial_timeout):
            await host.connect(PeerInfo(peer_id, addrs))
        return await host.new_stream(peer_id, list(protocols))
