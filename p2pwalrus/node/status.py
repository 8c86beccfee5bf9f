"""A node's status: what ``p2pwalrus status``, the NODE_INFO exchange, metrics and netlab
read. Written to ``DATA_DIR/node.json`` at every change of the live set, map or faults."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import p2pwalrus

from ..durable import write_atomic
from ..errors import StorageError

logger = logging.getLogger("p2pwalrus.node")

STATUS_FILE = "node.json"


def node_status(node) -> dict:
    """The status document of a StorageNode (JSON-ready)."""
    live = sorted(node.members.live.peer_ids()) if node.members else []
    return {
        "peer_id": node.peer_id,
        "addrs": node.node.listen_addrs() if node.node else [],
        "pid": os.getpid(),
        "network": node.net.name,
        "epoch": node.epoch,
        "live": live,
        "map_digest": node.shard_map.digest().hex() if node.shard_map else "",
        "shards": list(node.my_shards()),
        "blobs": len(node.store.list_blobs()),
        "certified_blobs": len(node.certs),
        "bytes_used": node.store.bytes_used(),
        "version": p2pwalrus.__version__,
        "updated": time.time(),
        **node.counters,
        "faults": {"deny": len(node.deny), "delay_ms": int(node.delay * 1000)},
        "repair": dict(node.repair.stats),
        "challenges": {p: dict(c) for p, c in node.repair.challenges.items()},
        "ledger": node.ledger.status() if node.ledger is not None else None,
        "epochs": _epochs_status(node),
    }


def _epochs_status(node) -> dict | None:
    if node.epochs is None:
        return None
    cur = node.epochs.current
    return {"decided_epoch": cur.epoch, "digest": cur.digest.hex(), "members": len(cur.committee),
            "stake": cur.stakes.get(node.peer_id, 0), "changes": node.epochs.changes[-20:]}


def write_status_file(node) -> None:
    """Replace DATA_DIR/node.json atomically (readers never see half a file). Not fsynced: it
    is a view for netlab and operators, rewritten at every change and every start, and an
    fsync per membership change on the event loop held up every node of an in-process testnet."""
    try:
        write_atomic(Path(node.data_dir) / STATUS_FILE, json.dumps(node_status(node)).encode(), durable=False)
    except StorageError as exc:
        logger.warning("cannot write node status file: %s", exc)
