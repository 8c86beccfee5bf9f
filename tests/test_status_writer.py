"""node.json is rewritten at most once per interval while changes keep coming, the last change
always written, the file written off the event loop (node/status.py's StatusWriter)."""

from __future__ import annotations

import threading
import time

import trio

from p2pwalrus.node.status import StatusWriter


class _Node:
    data_dir = "unused"

    def __init__(self):
        self.state = 0
        self.written: list[tuple[float, int]] = []
        self.wrote = trio.Event()
        self.threads: set[int] = set()


def _writer(node: _Node, interval: float) -> StatusWriter:
    def store(data_dir, data):
        node.threads.add(threading.get_ident())
        node.written.append((time.monotonic(), data))
        try:
            trio.from_thread.run_sync(node.wrote.set)
        except RuntimeError:  # called on the event loop's own thread (not running: at once)
            node.wrote.set()

    return StatusWriter(node, min_interval=interval, render=lambda n: n.state, store=store)


async def _next_write(node: _Node) -> None:
    with trio.fail_after(5):
        await node.wrote.wait()
    node.wrote = trio.Event()


async def test_a_burst_is_one_write_and_the_next_change_waits_for_the_interval():
    node = _Node()
    writer = _writer(node, 0.3)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        for i in range(1, 501):  # a burst: 500 changes in one scheduling round
            node.state = i
            writer.request()
        await _next_write(node)
        assert [s for _, s in node.written] == [500]  # one write, of the last state
        node.state = 501
        writer.request()
        await _next_write(node)
        assert [s for _, s in node.written] == [500, 501]
        assert node.written[1][0] - node.written[0][0] >= 0.3 - 0.01  # not before the interval ended
        assert threading.get_ident() not in node.threads  # the file is written off the event loop
        nursery.cancel_scope.cancel()
    assert writer.writes == 2


async def test_a_pending_change_is_written_when_the_node_stops():
    node = _Node()
    writer = _writer(node, 60.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        node.state = 1
        writer.request()
        await _next_write(node)
        node.state = 2
        writer.request()  # waits for the interval, which never ends here
        nursery.cancel_scope.cancel()
    assert [s for _, s in node.written] == [1, 2]


def test_without_run_every_request_writes_at_once():
    node = _Node.__new__(_Node)
    node.state, node.written, node.threads = 7, [], set()
    writer = StatusWriter(node, min_interval=60.0, render=lambda n: n.state,
                          store=lambda d, data: node.written.append((0.0, data)))
    writer.request()
    writer.request()
    assert [s for _, s in node.written] == [7, 7]
