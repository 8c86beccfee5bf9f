"""Helpers shared by the netlab test modules (real node processes)."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

from netlab.lab import Lab, pid_alive


def node_json(lab: Lab, i: int) -> dict:
    return json.loads((Path(lab.nodes[i].data_dir) / "node.json").read_text())


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def gone(pids) -> bool:
    return all(not pid_alive(p) for p in pids)


def nodes_holding_at_most(nodes, limit: int):
    """Nodes (not node 0, the bootstrap) whose shards add up to at most `limit`, fewest shards
    first (so as many nodes as fit), and the shards they hold together."""
    picked, total = [], 0
    for node in sorted(nodes[1:], key=lambda nd: len(nd.my_shards())):
        if total + len(node.my_shards()) <= limit:
            picked.append(node)
            total += len(node.my_shards())
    return picked, total


@contextmanager
def running_lab(directory: Path, nodes: int, shards: int, **options):
    """A netlab testnet of node processes (netlab.cli.bring_up's options), taken down after."""
    from netlab.cli import bring_up

    lab, _ = bring_up(directory, nodes, shards, **options)
    try:
        yield lab
    finally:
        lab.down()
