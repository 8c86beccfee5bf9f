"""A storage node takes the membership changes queued while it was busy as one batch: one
shard map and one liveness round for them all, not one per change (node/service.py)."""

from __future__ import annotations

import types

import trio

from p2pwalrus.core.records import ChangeKind, MembershipChange
from p2pwalrus.node.service import StorageNode


async def test_changes_queued_while_busy_are_one_recompute():
    recomputes, wakes = [], []
    fake = types.SimpleNamespace(
        membership_batches=0,
        members=types.SimpleNamespace(live=[]),
        liveness=types.SimpleNamespace(wake=lambda: wakes.append(1)),
        _recompute_map=lambda: recomputes.append(1),
    )
    send, recv = trio.open_memory_channel(256)
    for i in range(50):  # a burst of joins, queued before the loop runs
        send.send_nowait(MembershipChange(ChangeKind.JOINED, f"peer{i}", None))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(StorageNode._membership_loop, fake, recv)
            while fake.membership_batches < 1:
                await trio.sleep(0)
            assert len(recomputes) == 2  # the first view, then one for the whole burst
            assert len(wakes) == 1
            send.send_nowait(MembershipChange(ChangeKind.LEFT, "peer0", None))
            while fake.membership_batches < 2:
                await trio.sleep(0)
            assert len(recomputes) == 3 and len(wakes) == 2
            nursery.cancel_scope.cancel()
