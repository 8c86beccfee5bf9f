"""Keep a bad message from a peer, or many short-lived clients, from stopping the node (py-libp2p 0.8.1).

1. An exception in a stream handler of py-libp2p's own protocols (GossipSub, Kademlia,
   identify) is not caught there: it ends the connection's task group and, through it, the
   host. A peer that sends one malformed GossipSub frame (``DecodeError`` in
   ``Pubsub.continuously_read_stream``) stopped the whole node process. The same holds for
   GossipSub topic validators: ``Pubsub.validate_msg`` catches only ``ValidationError``, so a
   validator that raised anything else (``OverflowError`` on ``1e400``, ``RecursionError`` on
   deeply nested JSON, ``ValueError`` on an empty member ID) ended ``push_msg``'s task, the
   pubsub service and the host with it. ``apply()`` puts a boundary at each of these places:

   - every stream handler's failure ends only its own stream: logged, the stream reset;
   - every topic validator registered with ``Pubsub.set_topic_validator`` (ours and any
     library one) returns False instead of raising: the message is dropped, one log line;
   - ``Pubsub.push_msg`` as a whole contains failures (signature checks, routers).

   Failures are logged once each, and a flood of them is summarised rather than logged line
   by line (``LogOnce``).

2. Every inbound TCP connection takes a slot of the swarm's inbound cap
   (``Swarm._inbound_limiter``: max_connections - min_connections = 250 here), released when
   its handler returns; and the handler, once the connection is upgraded, waits for the
   *swarm* to finish (``await self.manager.wait_finished()``, swarm.py:2060), not for the
   connection to close. So a slot was never given back: after 250 inbound connections in a
   node's life, counting every CLI command that ever dialled it, the node refused every new
   one ("no bootstrap peer answered", "recently failed all addresses"). On a 10-node
   netlab that was round 82 of the read-after-write loop, every time. ``apply()`` makes
   the handler return once its connection has closed (Yamux ``event_closed``), so the cap
   bounds open inbound connections, as it was meant to.
"""

from __future__ import annotations

import collections
import contextvars
import functools
import inspect
import logging
from typing import Any

import trio

from ..log_once import LogOnce, describe as _describe

logger = logging.getLogger(__name__)

_applied = False
originals: dict[str, Any] = {}  # what apply() replaced (tests show the boundaries matter)


log_once = LogOnce(logger)
# Per process (an in-process testnet shares it): messages each topic's validators judged,
# and the failures contained at each boundary.
stats: collections.Counter = collections.Counter()
_stats_waiters: list = []  # trio.Events of tasks in stats_changed()


def _count(key: Any) -> None:
    stats[key] += 1
    if _stats_waiters:
        waiters = list(_stats_waiters)
        _stats_waiters.clear()
        for event in waiters:
            event.set()


async def stats_changed() -> None:
    """Until ``stats`` next changes (tests and harnesses wait on it instead of polling)."""
    import trio

    event = trio.Event()
    _stats_waiters.append(event)
    await event.wait()


def _peer_of(obj: Any) -> str:
    try:
        return str(obj.muxed_conn.peer_id)
    except Exception:
        return "?"


def contain_validator(topic: str, validator: Any, is_async: bool) -> Any:
    """A validator that never raises: any exception drops the message (returns False)."""

    def refuse(forwarder: Any, exc: BaseException) -> bool:
        _count(("validator_failed", topic))
        log_once(f"validator:{topic}:{forwarder}", logging.WARNING, "gossip on %s from %s refused: validator failed with %s",
                 topic, forwarder, _describe(exc))
        return False

    if is_async:
        @functools.wraps(validator)
        async def contained_async(forwarder: Any, msg: Any) -> bool:
            _count(("validated", topic))
            try:
                return bool(await validator(forwarder, msg))
            except Exception as exc:  # Cancelled is a BaseException: it goes on
                return refuse(forwarder, exc)

        contained_async.__p2pwalrus_contained__ = True  # type: ignore[attr-defined]
        return contained_async

    @functools.wraps(validator)
    def contained(forwarder: Any, msg: Any) -> bool:
        _count(("validated", topic))
        try:
            return bool(validator(forwarder, msg))
        except Exception as exc:
            return refuse(forwarder, exc)

    contained.__p2pwalrus_contained__ = True  # type: ignore[attr-defined]
    return contained


def apply() -> None:
    """Idempotent: patch py-libp2p's boundaries once per process."""
    global _applied
    if _applied:
        return
    from libp2p.host.basic_host import BasicHost
    from libp2p.pubsub.pubsub import Pubsub

    original = BasicHost._swarm_stream_handler

    async def _swarm_stream_handler(self: Any, net_stream: Any) -> None:
        try:
            await original(self, net_stream)
        except Exception as exc:  # not Cancelled (a BaseException): shutdown goes on as before
            _count("stream_failed")
            try:
                protocol = net_stream.get_protocol()
            except Exception:
                protocol = "?"
            log_once(f"stream:{protocol}:{_peer_of(net_stream)}", logging.INFO, "stream %s from %s failed, reset: %s",
                     protocol, _peer_of(net_stream), _describe(exc))
            try:
                await net_stream.reset()
            except Exception:
                pass

    BasicHost._swarm_stream_handler = _swarm_stream_handler

    original_set_validator = Pubsub.set_topic_validator

    def set_topic_validator(self: Any, topic: str, validator: Any, is_async_validator: bool) -> None:
        if not getattr(validator, "__p2pwalrus_contained__", False):
            is_async = is_async_validator or inspect.iscoroutinefunction(validator)
            validator = contain_validator(topic, validator, is_async)
        original_set_validator(self, topic, validator, is_async_validator)

    Pubsub.set_topic_validator = set_topic_validator

    original_push = Pubsub.push_msg

    async def push_msg(self: Any, msg_forwarder: Any, msg: Any) -> None:
        try:
            await original_push(self, msg_forwarder, msg)
        except Exception as exc:
            _count("push_failed")
            log_once("push_msg", logging.WARNING, "gossip message from %s dropped: %s", msg_forwarder, _describe(exc))

    Pubsub.push_msg = push_msg
    originals.update(swarm_stream_handler=original, set_topic_validator=original_set_validator, push_msg=original_push)
    _release_inbound_slots_on_close()
    _applied = True


class _Upgraded:
    """The muxed connection an inbound handler produced, handed from the upgrade back to it."""

    def __init__(self) -> None:
        self.muxed: Any = None
        self.ready = trio.Event()


_upgraded: contextvars.ContextVar[_Upgraded | None] = contextvars.ContextVar("p2pwalrus_inbound", default=None)


def _release_inbound_slots_on_close() -> None:
    """(2) An inbound connection's handler returns when that connection has closed."""
    from libp2p.network.swarm import Swarm

    orig_upgrade = Swarm.upgrade_inbound_raw_conn
    orig_handle = Swarm._do_handle_inbound_connection

    async def upgrade_inbound_raw_conn(self: Any, raw_conn: Any, maddr: Any) -> Any:
        muxed = await orig_upgrade(self, raw_conn, maddr)
        box = _upgraded.get()
        if box is not None:
            box.muxed = muxed
            box.ready.set()
        return muxed

    async def _do_handle_inbound_connection(self: Any, read_write_closer: Any, maddr: Any,
                                            failure_event: Any) -> None:
        box = _Upgraded()
        token = _upgraded.set(box)  # read by upgrade_inbound_raw_conn, run in this very task
        try:
            async with trio.open_nursery() as nursery:
                async def until_closed() -> None:
                    await box.ready.wait()
                    closed = getattr(box.muxed, "event_closed", None)
                    if closed is None:  # a muxer without the event: the library's own wait
                        return
                    await closed.wait()
                    nursery.cancel_scope.cancel()  # ends the library's wait for the whole swarm

                nursery.start_soon(until_closed)
                await orig_handle(self, read_write_closer, maddr, failure_event)
                nursery.cancel_scope.cancel()  # refused or failed before the upgrade finished
        finally:
            _upgraded.reset(token)

    Swarm.upgrade_inbound_raw_conn = upgrade_inbound_raw_conn
    Swarm._do_handle_inbound_connection = _do_handle_inbound_connection
