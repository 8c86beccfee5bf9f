"""A node's status: what ``p2pwalrus status``, the NODE_INFO exchange, metrics and netlab
read. Written to ``DATA_DIR/node.json`` after a change of the live set, map or faults: at
once, then at most once per ``StatusWriter.min_interval`` while changes keep coming."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import trio

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


def render_status(node) -> bytes:
    return json.dumps(node_status(node)).encode()


def store_status(data_dir, data: bytes) -> None:
    """Replace DATA_DIR/node.json atomically (readers never see half a file). Not fsynced: it
    is a view for netlab and operators, rewritten after changes and at every start. (A rename
    over the old file still costs the kernel about a millisecond on ext4, which starts the new
    file's writeback: StatusWriter does it in a worker thread, off the event loop.)"""
    try:
        write_atomic(Path(data_dir) / STATUS_FILE, data, durable=False)
    except StorageError as exc:
        logger.warning("cannot write node status file: %s", exc)


class StatusWriter:
    """node.json rewritten at most once per ``min_interval`` seconds, the last change always
    written: a quiet node's change at once (by ``run``, in its next scheduling round), a burst
    of changes (many nodes joining: every join is a live-set change on every node) in one
    write now and one at the end of each interval, not one per change. At 100 nodes joining
    one in-process network that was about 10,000 JSON documents and renames, all on the
    event loop. The document is made on the event loop (it reads the node), the file is
    written in a worker thread.

    Without ``run`` (before the node runs, or once it has stopped) a request writes at once."""

    def __init__(self, node, min_interval: float = 1.0, render=render_status, store=store_status):
        self.node = node
        self.min_interval = min_interval
        self._render = render
        self._store = store
        self._last = float("-inf")
        self._dirty: trio.Event | None = None  # set while a change waits to be written
        self._running = False
        self.writes = 0

    def request(self) -> None:
        if self._running:
            self._dirty.set()
        else:
            self._store(self.node.data_dir, self._render(self.node))
            self.writes += 1

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self._dirty = trio.Event()
        self._running = True
        task_status.started()
        try:
            while True:
                await self._dirty.wait()
                wait = self._last + self.min_interval - time.monotonic()
                if wait > 0:
                    await trio.sleep(wait)
                self._dirty = trio.Event()
                data = self._render(self.node)
                self._last = time.monotonic()
                self.writes += 1
                await trio.to_thread.run_sync(self._store, self.node.data_dir, data)
        finally:
            self._running = False
            if self._dirty.is_set():  # a change not written yet: the file must not lag behind
                self._store(self.node.data_dir, self._render(self.node))
                self.writes += 1
