"""node.json is rewritten at most once per interval while changes keep coming, and the last
change is always written (node/status.py's StatusWriter)."""

from __future__ import annotations

import time

import trio

from p2pwalrus.node.status import StatusWriter


class _Node:
    def __init__(self):
        self.state = 0
        self.written: list[tuple[float, int]] = []
        self.wrote = trio.Event()


def _recorder(node: _Node) -> None:
    node.written.append((time.monotonic(), node.state))
    node.wrote.set()


async def test_burst_of_changes_is_two_writes_and_ends_with_the_last_state():
    node = _Node()
    writer = StatusWriter(node, min_interval=0.3, write=_recorder)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        for i in range(1, 501):  # a burst: 500 changes at once
            node.state = i
            writer.request()
        assert [s for _, s in node.written] == [1]  # a quiet node's first change is written at once
        with trio.fail_after(5):
            while len(node.written) < 2:
                node.wrote = trio.Event()
                await node.wrote.wait()
        assert [s for _, s in node.written] == [1, 500]  # the last state, in one more write
        assert node.written[1][0] - node.written[0][0] >= 0.3 - 0.01
        nursery.cancel_scope.cancel()
    assert writer.writes == 2


async def test_pending_change_is_written_when_the_node_stops():
    node = _Node()
    writer = StatusWriter(node, min_interval=60.0, write=_recorder)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        node.state = 1
        writer.request()
        node.state = 2
        writer.request()  # waits for the interval, which never ends here
        assert [s for _, s in node.written] == [1]
        nursery.cancel_scope.cancel()
    assert [s for _, s in node.written] == [1, 2]


def test_without_run_every_request_writes():
    node = _Node.__new__(_Node)
    node.state, node.written, node.wrote = 7, [], None
    writer = StatusWriter(node, min_interval=60.0, write=lambda n: n.written.append((0.0, n.state)))
    writer.request()
    writer.request()
    assert [s for _, s in node.written] == [7, 7]
