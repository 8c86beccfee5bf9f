"""Fresh signatures for a certificate that churn has moved away from (issue 13).

A certificate counts only the shards that the validator's own map gives its signers. After
joins and leaves move more of a blob's confirmed shards than its margin over n - f, nodes and
readers with today's map refuse it although the blob is stored. Then a node asks today's
holders (its own view) to CONFIRM the shards they hold now, with the certificate's labels and
end epoch, and builds a certificate of the current epoch from their answers; nodes replace
the one they hold with it (a later certified epoch, the same end epoch and labels).

Only for a certificate that already shows f + 1 shards in our own view, signatures checked:
some honest holder signed it, so the blob was really stored; identities holding at most f
shards alone never get a node to ask the network for signatures. Honest holders sign only
for the slivers they hold and the certificate they accepted.
"""

from __future__ import annotations

import logging
import time

import trio

from ..core.certificates import (
    AvailabilityCertificate,
    InvalidCertificateError,
    StorageConfirmation,
    covered_in_view,
    one_honest,
    quorum,
    sign_confirmation,
    verify_confirmation,
)
from ..p2p import rpc
from ..core import messages as wire
from ..core import protocols

logger = logging.getLogger("p2pwalrus.node")

ASKS_AT_ONCE = 16
PER_SWEEP = 32  # certificates a node renews after one repair sweep


def short_in_current_view(node, cert: AvailabilityCertificate) -> bool:
    """Whether today's map (alone) no longer counts n - f shards of the certificate.

    Never on a network with epochs: a certificate is judged by the decided committee of
    its own epoch, which every node keeps (the chain), so an epoch change cannot make it
    short, and nothing needs renewing."""
    if getattr(node, "epochs", None) is not None:
        return False
    return node.shard_map is not None and len(covered_in_view(cert, node.shard_map)) < quorum(cert.n_shards)


async def shows_an_honest_signer(node, cert: AvailabilityCertificate) -> bool:
    """f + 1 shards in our views, signatures checked: more than identities holding f shards sign."""
    try:
        await node.certcheck.check(cert, need=one_honest(cert.n_shards))
        return True
    except InvalidCertificateError:
        return False


async def recertify(node, cert: AvailabilityCertificate) -> AvailabilityCertificate | None:
    """A certificate of today's holders for the blob of `cert`, or None if they do not reach n - f."""
    view, epoch = node.shard_map, node.epoch
    if view is None or cert.end_epoch <= epoch:
        return None
    labels = {"deletable": cert.deletable, "owner": cert.owner}
    header = wire.ConfirmRequest(cert.blob_id, epoch, cert.end_epoch)
    confs: dict[str, StorageConfirmation] = {}
    limiter = trio.CapacityLimiter(ASKS_AT_ONCE)

    async def ask(peer: str) -> None:
        async with limiter:
            try:
                stream, reply = await node.call(peer, protocols.CONFIRM, header)
                await rpc.close_quietly(stream)
                conf = reply.confirmation if reply.ok else None
            except Exception as exc:
                logger.info("confirmation of %s from %s: %r", cert.blob_id.hex()[:16], peer, exc)
                return
        if (conf is not None and conf.peer_id == peer and conf.shards and set(conf.shards) <= set(view.shards_of(peer))
                and verify_confirmation(conf, node.net.name, cert.blob_id, epoch, cert.end_epoch, **labels)):
            confs[peer] = conf

    async with trio.open_nursery() as nursery:
        for peer in view.nodes:
            if peer != node.peer_id and view.shards_of(peer):
                nursery.start_soon(ask, peer)
    if cert.blob_id in node.certs:  # our own shards, if we hold their slivers
        held = [s for s in await trio.to_thread.run_sync(node.held_pairs, cert.blob_id) if s in view.shards_of(node.peer_id)]
        if held:
            confs[node.peer_id] = sign_confirmation(node.keypair, node.peer_id, node.net.name, cert.blob_id, epoch,
                                                    cert.end_epoch, held, **labels)
    covered = len({s for c in confs.values() for s in c.shards})
    if covered < quorum(cert.n_shards):
        logger.info("renewal of the certificate of %s: today's holders signed %d shards, %d needed (%d of them "
                    "answered)", cert.blob_id.hex()[:16], covered, quorum(cert.n_shards), len(confs))
        return None
    return AvailabilityCertificate(node.net.name, cert.blob_id, cert.n_shards, epoch, cert.end_epoch, view.nodes,
                                   tuple(confs[p] for p in sorted(confs)), deletable=cert.deletable, owner=cert.owner)


async def renew(node, cert: AvailabilityCertificate, *, source: str) -> bool:
    """Recertify and accept (and gossip) the result; True if a fresh certificate was accepted."""
    fresh = await recertify(node, cert)
    if fresh is None:
        return False
    try:
        accepted = await node.accept_certificate(fresh, source=source)
    except InvalidCertificateError as exc:
        logger.info("renewed certificate of %s refused here: %s", cert.blob_id.hex(), exc.reason)
        return False
    if accepted:
        logger.info("certificate of %s renewed by today's holders (epoch %d)", cert.blob_id.hex(), fresh.epoch)
        await node.gossip_certificate(fresh.to_bytes())
    return accepted


def renewer(view, cert: AvailabilityCertificate) -> str | None:
    """The one node that renews a certificate: its first signer (by peer ID) still live in the
    view. A signer stored the blob and took its certificate; a newcomer, which may not hold
    the certificate yet, is never the one."""
    live = set(view.nodes)
    return min((c.peer_id for c in cert.confirmations if c.peer_id in live), default=None)


async def renew_short_certificates(node) -> int:
    """After a repair sweep: renew the certificates today's map no longer counts, each by one
    node (`renewer`), at most PER_SWEEP of them.
    Returns how many are still to renew (failed now, or backed off)."""
    if node.shard_map is None:
        return 0
    done = pending = 0
    for blob_id, cert in list(node.certs.items()):
        if cert.end_epoch <= node.epoch or not short_in_current_view(node, cert):
            continue
        if renewer(node.shard_map, cert) != node.peer_id:
            continue
        if done >= PER_SWEEP or not node.renew_backoff.ready(blob_id, time.monotonic()):
            pending += 1
            continue
        done += 1
        if await renew(node, cert, source="renewal"):
            node.renew_backoff.succeeded(blob_id)
        else:  # holders still repairing, say: again after a while, not every sweep
            node.renew_backoff.failed(blob_id, time.monotonic())
            pending += 1
    return pending
