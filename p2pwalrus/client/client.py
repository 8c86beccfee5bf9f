"""The client: a libp2p peer that stores nothing, talks to the holders of each shard directly.

It pulls the membership from a bootstrap node over a stream (no waiting for gossip),
computes the shard map, and stores or reads blobs. Used by the CLI and the gateway.

`Client` is composed of one part per job, each in its own module:

- calls.py: requests to nodes (dict transport and the typed messages of core/messages.py)
- membership.py: the live view, member pulls, shard maps
- certs.py: finding, checking and publishing certificates; inconsistency proofs
- store.py: encode, pay, upload, certify
- read.py: metadata and slivers, verified, decoded when needed
- lifecycle.py: extend, delete, status

The names other modules import from here (errors, `Progress`, `StoreResult`, the timeouts)
are re-exported.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from .. import p2p as _p2p  # noqa: F401  (first: loads libp2p lean, see p2p/patches/lean_import.py)
import multiaddr  # noqa: E402

from ..config import NetworkConfig
from ..core.placement import ShardMap
from ..core.records import SignedNodeRecord
from ..p2p.host import build_host
from .calls import CALL_TIMEOUT, DIAL_TIMEOUT, Calls
from .certs import CERT_PUSH_PAUSE, CERT_PUSH_TIMEOUT, QUORUM_GRACE, Certificates
from .common import BlobExpiredError, BlobInvalidError, Progress
from .lifecycle import Lifecycle
from .membership import Membership
from .read import READ_HEDGE_FACTOR, READ_HEDGE_MIN, READ_HEDGE_TICK, Reading
from .store import QUOTE_TIMEOUT, STORE_RETRY_PAUSE, UPLOAD_TIMEOUT, StoreResult, Storing

# Importable from here, as before the split. The tunables are read where they are used: a
# test that changes one patches its module (client.read, client.certs, ...), not this one.
__all__ = [
    "Client", "open_client", "BlobExpiredError", "BlobInvalidError", "Progress", "StoreResult",
    "CALL_TIMEOUT", "DIAL_TIMEOUT", "CERT_PUSH_PAUSE", "CERT_PUSH_TIMEOUT", "QUORUM_GRACE", "QUOTE_TIMEOUT",
    "STORE_RETRY_PAUSE", "UPLOAD_TIMEOUT", "READ_HEDGE_FACTOR", "READ_HEDGE_MIN", "READ_HEDGE_TICK",
]


class Client(Membership, Calls, Certificates, Storing, Reading, Lifecycle):
    """A client of one network: its host, its key, its view of the network (see the parts above)."""

    def __init__(self, net: NetworkConfig, host, keypair, *, epoch_cache=None):
        self.net = net
        self.host = host
        self.keypair = keypair
        self._proven_invalid: set[bytes] = set()  # blobs whose inconsistency proof verified here
        self._unproven: set[tuple[bytes, str]] = set()  # (blob, peer) claims of invalidity without a proof
        self.records: dict[str, SignedNodeRecord] = {}
        self.shard_map: ShardMap | None = None
        # Pays for stores from this client's key (payments.StorePayer), on a network with a ledger;
        # its journal under payer_journal (default: P2PWALRUS_CLIENT_DIR/wallet).
        self.payer = None
        self.payer_journal = None
        self.on_pay = None  # called with the Quote just before a store or extension pays (the CLI prints it)
        # Every member this client has seen in a pulled live set, not only the last one.
        self.known_peers: set[str] = set()
        # Shard maps of the live sets other bootstrap peers gave (learn_members): certificates
        # are judged by our own map first, then by these honest views (certificates.py).
        self.other_views: list[ShardMap] = []
        self.past_views: list[ShardMap] = []  # maps this client held before (a long-lived gateway)
        # peer -> {"verify": s, "write": s} its last store reply reported (StoreResult sums them)
        self.node_timing: dict[str, dict] = {}
        # A network with a genesis: shards are held as the decided epoch state says (client/epochs.py).
        self.epochs = None
        if net.genesis is not None:
            from .epochs import EpochView

            self.epochs = EpochView(net.genesis, epoch_cache)

    @property
    def peer_id(self) -> str:
        return str(self.host.get_id())


@asynccontextmanager
async def open_client(net: NetworkConfig, keypair=None, *, epoch_cache=None):
    """A running client host; membership is pulled on first use."""
    if keypair is None:
        from libp2p.crypto.ed25519 import create_new_key_pair

        keypair = create_new_key_pair()
    host = build_host(keypair, [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")])
    async with host.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        yield Client(net, host, keypair, epoch_cache=epoch_cache)
