"""Yamux speed-ups (fast path patches 1-3, 6, 7 and Yamux's half of 4), for py-libp2p 0.8.1's Yamux muxer.

What each replaces in ``libp2p.stream_muxer.yamux.yamux`` (line numbers of 0.8.1):

1. ``MAX_MESSAGE_SIZE`` (yamux.py:150, read at call time by ``YamuxStream.write``): frames of
   1 MiB instead of 64 KiB. A 64 KiB frame does not fit one Noise message (65519 plaintext
   bytes), so each became two messages. Receivers, stock ones too, accept any DATA frame up
   to ``MAX_WINDOW_SIZE`` (16 MiB) and we never send more than the window they grant.
2. ``YamuxStream._auto_tune_and_send_window_update`` (yamux.py:410): window updates at half
   the window, as go-yamux; stock sent one after nearly every read, so each small message
   cost a second frame back.
3. ``Yamux._write_frame`` (yamux.py:851): without its per-frame header unpack and debug
   f-string when DEBUG logging is off.
4. The module's ``read_exactly`` (yamux.py:41, used at :1180 and :1191): frame headers and
   bodies come from the buffered Noise reader (noise.py), decrypted straight into the
   returned buffer.
6. ``YamuxStream.write`` (yamux.py:229): without its two copies of every byte (slice, then
   ``header + chunk``): header and a view of the caller's data are encrypted straight into
   a send buffer reused per connection (noise.py); and one write at a time per stream, so
   that concurrent writes never interleave their frames.
7. ``YamuxStream.send_window`` becomes a property that wakes a writer waiting for window
   (stock polls every 10 ms, yamux.py:280-285).
8. ``Yamux.read_stream`` (yamux.py:1051): a read that takes all of a stream's buffered
   bytes (more than BULK_READ of them) takes the buffer itself, and the stream gets a new
   empty one, instead of ``bytes(buffer)`` (a copy of everything received: a quarter of a
   receiver's event-loop time in bulk transfers). Such a read returns a bytearray; every
   reader in py-libp2p and here takes bytes-like data.

9. The module's PY_YAMUX_* settings (``_py_yamux_env``, ``_py_yamux_env_set`` and the five
   helpers around them, yamux.py:70-128): read from the environment once, at the first call,
   instead of an ``os.getenv`` on every frame (60,000 lookups while 10 nodes joined 60 in
   one process, 2% of its CPU). Set them before the process starts, as go-yamux's.

The initial window (256 KiB) is deliberately left alone: raising it breaks other
implementations and gains nothing. Every change is wire-compatible with stock peers.

Pinned to libp2p 0.8.1: applied only by ``fastpath.enable()``, which checks the version.
"""

from __future__ import annotations

import functools
import logging
import struct
from typing import Any

import trio

from .noise import MAX_WRITE, fast_noise_writer, noise_send, rx_for

# Data bytes per Yamux DATA frame we send (stock: 65524): the largest write the Noise
# path's buffers are sized for.
YAMUX_MAX_PAYLOAD = MAX_WRITE
# (8) Reads of more buffered bytes than this take the buffer instead of a copy of it.
BULK_READ = 64 * 1024

_originals: dict[str, Any] = {}


def patch() -> None:
    from libp2p.stream_muxer.yamux import yamux

    _originals["MAX_MESSAGE_SIZE"] = yamux.MAX_MESSAGE_SIZE
    _originals["read_exactly"] = yamux.read_exactly
    _originals["_write_frame"] = yamux.Yamux._write_frame
    orig_read_exactly = yamux.read_exactly
    orig_write_frame = yamux.Yamux._write_frame
    ylog = yamux.logger

    # (1) replaces MAX_MESSAGE_SIZE = 64 * 1024 (yamux.py:150): 1 MiB frames, so
    # one frame is ~16 full Noise messages instead of a 65519 + 17 byte pair.
    # Receivers (stock too) accept any DATA frame up to MAX_WINDOW_SIZE.
    # YamuxStream.write sends MAX_MESSAGE_SIZE - HEADER_SIZE data bytes per frame.
    yamux.MAX_MESSAGE_SIZE = YAMUX_MAX_PAYLOAD + yamux.HEADER_SIZE

    # (2) replaces YamuxStream._auto_tune_and_send_window_update (yamux.py:410). Stock sends
    # a WINDOW_UPDATE after every read whose window is anywhere below target (its "partial
    # slack" branch, and its release-on-read branch, on by default), so each small message
    # costs a second frame back: at 70 in-process nodes they were half of all frames. As
    # go-yamux's sendWindowUpdate: credit goes back once the window is short of its target
    # by the threshold (half of it), with the same growth and auto-tuning; nothing is sent
    # for smaller reads. (This is the only caller of _yamux_release_on_read.)
    _originals["_auto_tune"] = yamux.YamuxStream._auto_tune_and_send_window_update

    async def _auto_tune_and_send_window_update(self: Any, *, bytes_read: int = 0) -> None:
        total = 0
        async with self.window_lock:
            buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
            delta = self.target_recv_window - (self.recv_window + buffered)
            if delta > 0 and delta >= self._grow_threshold():
                total = self._grow_to_delta(buffered) + self._apply_autotune_epoch(buffered)
        if total > 0:
            await self.send_window_update(total, skip_lock=True)

    yamux.YamuxStream._auto_tune_and_send_window_update = _auto_tune_and_send_window_update

    # (4) replaces yamux's module-level read_exactly (libp2p/io/utils.py:11,
    # called at yamux.py:1180 and :1191): frame headers and bodies come from our
    # buffered Noise reader, decrypted straight into the returned buffer.
    async def read_exactly(reader: Any, n: int, retry_count: int = 100) -> bytes | bytearray:
        rx = rx_for(reader)
        if rx is None:
            return await orig_read_exactly(reader, n, retry_count)
        return await rx.read_exactly_scratch(n)

    yamux.read_exactly = read_exactly

    # (3) replaces Yamux._write_frame (yamux.py:851): same lock, write and
    # checkpoint, without unpacking the header and formatting a debug line per frame.
    async def _write_frame(self: Any, data: bytes) -> None:
        if ylog.isEnabledFor(logging.DEBUG):
            await orig_write_frame(self, data)
            return
        async with self._write_lock:
            await self.secured_conn.write(data)
        await trio.lowlevel.checkpoint()

    yamux.Yamux._write_frame = _write_frame

    # (6) replaces YamuxStream.write (yamux.py:229). Same window accounting,
    # locks and errors, but (a) no ``data[sent:...]`` slice and ``header + chunk``
    # concatenation (two copies of every byte): the header and a view of the
    # caller's data go straight to the Noise encryptor; (b) a writer out of send
    # window wakes as soon as a WINDOW_UPDATE raises it (see (7)) instead of
    # polling every 10 ms; it still gives up after 5 s like stock.
    MuxedStreamError = yamux.MuxedStreamError
    pack = struct.Struct(yamux.YAMUX_HEADER_FORMAT).pack
    header_size = yamux.HEADER_SIZE
    orig_stream_write = yamux.YamuxStream.write
    _originals["YamuxStream.write"] = orig_stream_write

    async def write(self: Any, data: bytes) -> None:
        # One write at a time per stream, across all its frames, as go-yamux's sendLock: a
        # write split by a short window must not interleave with another task's (GossipSub
        # writes one peer's stream from three tasks; interleaved, the peer's protobuf
        # decode failed and, uncaught in py-libp2p, took its whole node down).
        lock = self.__dict__.get("_fastpath_write_lock")
        if lock is None:
            lock = self.__dict__["_fastpath_write_lock"] = trio.Lock()
        async with lock:
            conn = self.conn
            rw = fast_noise_writer(conn.secured_conn)
            if rw is None or ylog.isEnabledFor(logging.DEBUG):
                await orig_stream_write(self, data)
                return
            if self.send_closed:
                raise MuxedStreamError("Stream is closed for sending")
            await _write_frames(self, conn, rw, data)

    async def _write_frames(self: Any, conn: Any, rw: Any, data: bytes) -> None:
        view = memoryview(data).cast("B")
        total_len = len(view)
        sent = 0
        while sent < total_len:
            to_send = 0
            while True:
                async with self.rw_lock.write_lock():
                    if self.send_closed:
                        raise MuxedStreamError("Stream is closed for sending")
                    async with self.window_lock:
                        if self.closed:
                            raise MuxedStreamError("Stream is closed")
                        if self.send_window > 0:
                            to_send = min(self.send_window, yamux.MAX_MESSAGE_SIZE - header_size, total_len - sent)
                            self.send_window -= to_send
                if to_send:
                    break
                self._zero_window_waits += 1
                with trio.move_on_after(5.0) as cancel_scope:
                    while True:
                        async with self.window_lock:
                            if self.send_window > 0 or self.closed:
                                break
                        event = self.__dict__["_fastpath_window_event"] = trio.Event()
                        with trio.move_on_after(0.01):  # closure is still noticed by polling, as stock
                            await event.wait()
                if cancel_scope.cancelled_caught:
                    raise MuxedStreamError("Timed out waiting for window update after 5 seconds.")
            header = pack(0, yamux.TYPE_DATA, 0, self.stream_id, to_send)
            async with conn._write_lock:  # as Yamux._write_frame
                await noise_send(rw, header, view[sent : sent + to_send])
            await trio.lowlevel.checkpoint()
            sent += to_send

    yamux.YamuxStream.write = write

    # (7) makes YamuxStream.send_window (a plain attribute, assigned in
    # __init__, YamuxStream.write and Yamux.handle_incoming at yamux.py:1305,
    # :1414 and :1606) a property that wakes a writer waiting in (6). The value
    # stays in the instance __dict__ under the same name, so streams made before
    # enable() or after disable() read the same number.
    def _get_send_window(self: Any) -> int:
        return self.__dict__["send_window"]

    def _set_send_window(self: Any, value: int) -> None:
        d = self.__dict__
        d["send_window"] = value
        if value > 0:
            event = d.get("_fastpath_window_event")
            if event is not None:
                event.set()

    yamux.YamuxStream.send_window = property(_get_send_window, _set_send_window)

    # (8) wraps Yamux.read_stream (yamux.py:1051). Under the same lock and in the same
    # order of checks as stock: a known stream, the connection not shutting down, a buffer;
    # a reset stream, or a smaller read, is left to stock. Stock's drained-and-closed
    # bookkeeping (_finalize_stream_locked) is kept.
    orig_read_stream = yamux.Yamux.read_stream
    _originals["read_stream"] = orig_read_stream
    _cache_env_readers(yamux)

    def takes_all(buffer: bytearray | None, n: int | None) -> bool:
        return buffer is not None and len(buffer) > BULK_READ and (n is None or n < 0 or n >= len(buffer))

    async def read_stream(self: Any, stream_id: int, n: int = -1) -> bytes | bytearray:
        if takes_all(self.stream_buffers.get(stream_id), n):  # checked again under the lock
            async with self.streams_lock:
                stream = self.streams.get(stream_id)
                buffer = self.stream_buffers.get(stream_id)
                if (stream is not None and takes_all(buffer, n) and not self.event_shutting_down.is_set()
                        and (stream.recv_closed or not stream.reset_received)):
                    self.stream_buffers[stream_id] = bytearray()
                    if stream.closed:
                        self._finalize_stream_locked(stream, fully_closed=True)
                    return buffer
        return await orig_read_stream(self, stream_id, n)

    yamux.Yamux.read_stream = read_stream


# (9) module functions that read PY_YAMUX_* settings: each answers the same for the process's life.
_ENV_READERS = ("_py_yamux_env", "_py_yamux_env_set", "_perf_yamux_debug_enabled", "_yamux_disable_hysteresis",
                "_yamux_release_on_read", "_yamux_batch_threshold_divisor", "_yamux_data_read_timeout")


def _cache_env_readers(yamux: Any) -> None:
    for name in _ENV_READERS:
        _originals[name] = getattr(yamux, name)
        setattr(yamux, name, functools.cache(_originals[name]))


def unpatch() -> None:
    from libp2p.stream_muxer.yamux import yamux

    for name in _ENV_READERS:
        setattr(yamux, name, _originals[name])

    yamux.MAX_MESSAGE_SIZE = _originals["MAX_MESSAGE_SIZE"]
    yamux.YamuxStream._auto_tune_and_send_window_update = _originals["_auto_tune"]
    yamux.read_exactly = _originals["read_exactly"]
    yamux.Yamux._write_frame = _originals["_write_frame"]
    yamux.YamuxStream.write = _originals["YamuxStream.write"]
    del yamux.YamuxStream.send_window  # back to the plain instance attribute
    yamux.Yamux.read_stream = _originals["read_stream"]
