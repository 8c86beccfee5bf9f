"""Many storage nodes in one trio process, with the same node code as the real thing.

Each node runs in its own cancel scope, so a test can kill one (cancel: no clean-up
beyond what trio unwinds), restart it on the same data dir, or add new ones.
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import multiaddr
import trio

from p2pwalrus.config import NetworkConfig, Timings
from p2pwalrus.node.service import StorageNode

def test_network(n_shards: int, *, name: str = "local", epoch_length: float = 3600.0,
                 timings: Timings = Timings()) -> NetworkConfig:
    return NetworkConfig(name=name, n_shards=n_shards, epoch_length=epoch_length,
                         genesis_time=time.time() - 1, timings=timings)


@dataclass
class NodeSlot:
    index: int
    data_dir: Path
    listen: list[str] | None = None  # after the first start: the same address again, as a real restart
    node: StorageNode | None = None
    scope: trio.CancelScope | None = None
    stopped: trio.Event = field(default_factory=trio.Event)

    @property
    def alive(self) -> bool:
        return self.node is not None and self.scope is not None and not self.stopped.is_set()


class Cluster:
    def __init__(self, net: NetworkConfig, base_dir: Path, nursery: trio.Nursery, configure=None,
                 bootstrap_count: int = 1):
        self.base_net = net
        self.bootstrap_count = bootstrap_count  # the first nodes started are every later node's bootstrap peers
        self.base_dir = Path(base_dir)
        self.nursery = nursery
        self.slots: list[NodeSlot] = []
        self.bootstrap: list[str] = []
        self.configure = configure  # called with each new StorageNode before it runs

    @property
    def net(self) -> NetworkConfig:
        return self.base_net.with_bootstrap(self.bootstrap)

    def alive(self) -> list[StorageNode]:
        return [s.node for s in self.slots if s.alive]

    async def _run_slot(self, slot: NodeSlot, task_status=trio.TASK_STATUS_IGNORED) -> None:
        slot.stopped = trio.Event()
        try:
            with trio.CancelScope() as scope:
                slot.scope = scope
                node = StorageNode(self.net, slot.data_dir, listen=slot.listen)
                if self.configure:
                    self.configure(node)
                slot.node = node
                await node.run(task_status=task_status)
        finally:
            if slot.node is not None:
                slot.node.close()  # the store and the data dir lock: a restart reopens both
            slot.stopped.set()

    async def start(self, index: int | None = None) -> StorageNode:
        """Start a new node, or restart node `index` on its data dir (same identity)."""
        if index is None:
            slot = NodeSlot(len(self.slots), self.base_dir / f"node{len(self.slots):03d}")
            self.slots.append(slot)
        else:
            slot = self.slots[index]
        node = await self.nursery.start(self._run_slot, slot)
        # Peers know the node by its address: a restart on a new port would leave a restarted
        # bootstrap node alone (its only bootstrap address is its own) and unreachable.
        addr = node.node.listen_addrs()[0]
        slot.listen = [f"/ip4/127.0.0.1/tcp/{multiaddr.Multiaddr(addr).value_for_protocol('tcp')}"]
        if index is None and len(self.bootstrap) < self.bootstrap_count:
            self.bootstrap = [*self.bootstrap, addr]
        return node

    async def kill(self, index: int) -> None:
        slot = self.slots[index]
        if slot.scope is not None:
            slot.scope.cancel()
            await slot.stopped.wait()
        slot.scope = None

    def wipe(self, index: int) -> None:
        import shutil

        shutil.rmtree(self.slots[index].data_dir / "store", ignore_errors=True)

    async def wait_for_change(self) -> None:
        """Until any live node changes its live set or shard map, or finishes a repair sweep."""
        # A live-set change need not change the map (our own record arriving, say): wake on both.
        async with trio.open_nursery() as nursery:
            for n in self.alive():
                async def wait(event):
                    await event.wait()
                    nursery.cancel_scope.cancel()
                nursery.start_soon(wait, n.map_changed)
                nursery.start_soon(wait, n.repair.swept)
                if n.members is not None:
                    nursery.start_soon(wait, n.members.changed)

    async def wait_until(self, predicate, timeout: float) -> float:
        """Until `await predicate()` is true, re-checked after every map change or repair sweep."""
        t0 = time.monotonic()
        with trio.fail_after(timeout):
            while not await predicate():
                await self.wait_for_change()
        return time.monotonic() - t0

    async def wait_converged(self, timeout: float = 30.0) -> float:
        """Until every live node knows exactly the live nodes and they agree on the map."""
        t0 = time.monotonic()
        with trio.fail_after(timeout):
            while True:
                nodes = self.alive()
                ids = {n.peer_id for n in nodes}
                digests = {n.shard_map.digest() if n.shard_map else b"" for n in nodes}
                if all(set(n.members.live.peer_ids()) == ids for n in nodes) and len(digests) == 1:
                    return time.monotonic() - t0
                if len(nodes) > 20:
                    # Many nodes change something many times a second: waking on every change
                    # cost three tasks per node and an N^2 check each time (10% of the process's
                    # CPU at 100 nodes, after a pause of a second per wake). A poll costs one
                    # check (about a millisecond at 100 nodes).
                    await trio.sleep(0.25)
                else:
                    await self.wait_for_change()


@asynccontextmanager
async def inprocess_network(n_nodes: int, n_shards: int, base_dir: Path, *, net: NetworkConfig | None = None,
                            configure=None, converge_timeout: float = 60.0):
    net = net or test_network(n_shards)
    async with trio.open_nursery() as nursery:
        cluster = Cluster(net, base_dir, nursery, configure)
        await cluster.start()
        for _ in range(n_nodes - 1):
            await cluster.start()
        await cluster.wait_converged(converge_timeout)
        try:
            yield cluster
        finally:
            nursery.cancel_scope.cancel()
