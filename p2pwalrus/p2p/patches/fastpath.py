"""Runtime speed-ups for py-libp2p 0.8.1's TCP + Noise + Yamux data path (DESIGN 6).

``enable()`` patches the library in this process (idempotent). Every change is
wire-compatible with unpatched peers: the Noise messages on the wire are
byte-for-byte what stock 0.8.1 sends for the same Yamux frames, and Yamux
frames are only made larger (stock readers accept DATA frames up to
``MAX_WINDOW_SIZE``, 16 MiB, and never send more than the window we grant).
The initial Yamux window (256 KiB) is deliberately left alone: raising it
breaks other implementations and gains nothing.

The patches, each replacing one piece of ``libp2p`` 0.8.1:

1. Yamux frames of 1 MiB instead of 64 KiB (``yamux.MAX_MESSAGE_SIZE``, read
   at call time by ``YamuxStream.write``). A 64 KiB frame does not fit one
   Noise message (65519 plaintext bytes), so each became two messages.
2. Window updates at half the window, as go-yamux: ``YamuxStream.
   _auto_tune_and_send_window_update`` (yamux.py:410) sent one after nearly every
   read, so each small message cost a second frame back.
3. ``Yamux._write_frame`` (yamux.py:851) without its per-frame header unpack
   and debug f-string when DEBUG logging is off.
4. Buffered Noise read path: ``SecureSession.read`` (secure_session.py:95) and
   Yamux's ``read_exactly`` (yamux.py:41, used at :1180 and :1191) read the
   socket 256 KiB at a time with ``recv_into``, parse several Noise messages per
   read and decrypt each straight into the caller's buffer. Stock did a 2-byte
   read per message length, 1-2 more reads for the body, and three copies
   (msgio ``read_exactly``, ``SecureSession`` bytearray, ``bytes()``).
5. Batched Noise writes: ``NoiseTransportReadWriter.write_msg`` (noise/io.py:59)
   encrypts every 65519-byte chunk of a write into one buffer and makes one
   socket write per batch, instead of one locked ``send_all`` per message.
6. ``YamuxStream.write`` (yamux.py:229) without its two copies of every byte
   (slice, then ``header + chunk``): header and a view of the caller's data are
   encrypted straight into a send buffer reused per connection; and one write at
   a time per stream, so that concurrent writes never interleave their frames.
7. ``YamuxStream.send_window`` becomes a property that wakes a writer waiting
   for window (stock polls every 10 ms, yamux.py:280-285).
8. PubSub's check of the signed peer record carried by every RPC
   (``maybe_consume_signed_record``, pubsub.py:565 and gossipsub.py:932) is
   skipped for a record byte-identical to the last one accepted from that peer.
9. ``TCPListener.get_addrs`` (tcp.py:306) remembers its answer while its sockets stay
   the same: every outgoing PubSub RPC asks for the host's addresses
   (``env_to_send_in_RPC``), and each time that was a ``getsockname`` and a multiaddr
   parsed per listener, 7% of a 40-node in-process testnet's CPU while it formed.
10. The service manager's task IDs (``FunctionTask._id``, only hashed) come from a
    counter, not ``uuid.uuid4()``: a ``getrandom`` system call per task, and py-libp2p
    starts a task per RPC received; 4.5% of a 100-node in-process testnet's CPU.

Buffers (receive, plaintext, reused send) start at a few KiB per connection and
grow with its traffic, so thousands of mostly idle connections in one process
(``netlab inproc``) cost little memory.

Pinned to libp2p 0.8.1: on any other version ``enable()`` warns and patches
nothing. ``P2PWALRUS_FASTPATH=0`` in the environment leaves the library stock.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import warnings
from typing import Any

import trio

SUPPORTED_LIBP2P_VERSION = "0.8.1"
YAMUX_MAX_PAYLOAD = 1 << 20  # data bytes per Yamux DATA frame we send (stock: 65524)
RECV_SIZE = 256 * 1024  # bytes asked of the socket per read (once the buffer has grown)
_RECV_INITIAL = 8 * 1024  # a new connection's receive buffer; doubles under load
_SENDBUF_INITIAL = 8 * 1024  # likewise the reused send buffer

_NOISE_MAX_MSG = 65535  # 2-byte length prefix
_NOISE_TAG = 16
_NOISE_MAX_PLAINTEXT = _NOISE_MAX_MSG - _NOISE_TAG  # 65519, as go-libp2p and libp2p 0.8.1
_MAX_NONCE = 2**64 - 1
_SENDBUF_SIZE = YAMUX_MAX_PAYLOAD + 64 * 1024  # reused per connection, at most: one 1 MiB frame, encrypted
_RECV_FULL = RECV_SIZE + 65535 + 2  # a partial Noise message kept, plus one full socket read
_SMALL_READ = 4096  # reads up to this size return bytes, larger ones a bytearray (no extra copy)

logger = logging.getLogger(__name__)

_enabled = False
_originals: dict[str, Any] = {}


def libp2p_version() -> str | None:
    try:
        import libp2p

        version = getattr(libp2p, "__version__", None)
        if version:
            return str(version)
    except Exception:  # pragma: no cover - libp2p missing or broken
        return None
    try:
        from importlib.metadata import version as dist_version

        return dist_version("libp2p")
    except Exception:  # pragma: no cover
        return None


def is_enabled() -> bool:
    return _enabled


def enable() -> bool:
    """Apply the speed-ups to this process; True if they are (now or already) applied.

    Refuses, with a RuntimeWarning, on any libp2p version but 0.8.1.
    Call before hosts are built (connections made earlier keep the stock path
    for reads if their session had nothing buffered yet, which is still correct).
    """
    global _enabled
    if _enabled:
        return True
    if os.environ.get("P2PWALRUS_FASTPATH", "1") == "0":  # stock libp2p, to tell its behaviour from ours
        return False
    version = libp2p_version()
    if version != SUPPORTED_LIBP2P_VERSION:
        warnings.warn(
            f"p2pwalrus.p2p.patches.fastpath: libp2p {version!r} is not {SUPPORTED_LIBP2P_VERSION!r}; "
            "transport speed-ups NOT applied",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    _patch_yamux()
    _patch_noise()
    _patch_pubsub_records()
    _patch_listener_addrs()
    _patch_task_ids()
    _enabled = True
    logger.debug("libp2p %s transport fast path enabled", version)
    return True


def disable() -> None:
    """Undo ``enable()`` (for tests and benchmarks); sessions already patched keep their buffers."""
    global _enabled
    if not _enabled:
        return
    from libp2p.security.noise import io as noise_io
    from libp2p.security.secure_session import SecureSession
    from libp2p.stream_muxer.yamux import yamux

    yamux.MAX_MESSAGE_SIZE = _originals["MAX_MESSAGE_SIZE"]
    yamux.YamuxStream._auto_tune_and_send_window_update = _originals["_auto_tune"]
    yamux.read_exactly = _originals["read_exactly"]
    yamux.Yamux._write_frame = _originals["_write_frame"]
    yamux.YamuxStream.write = _originals["YamuxStream.write"]
    del yamux.YamuxStream.send_window  # back to the plain instance attribute
    SecureSession.read = _originals["SecureSession.read"]
    noise_io.NoiseTransportReadWriter.write_msg = _originals["write_msg"]
    from libp2p.pubsub import gossipsub, pubsub

    pubsub.maybe_consume_signed_record = gossipsub.maybe_consume_signed_record = _originals["consume_record"]
    from libp2p.transport.tcp import tcp

    tcp.TCPListener.get_addrs = _originals["TCPListener.get_addrs"]
    from libp2p.tools.anyio_service import tasks, trio_tasks

    tasks.uuid = trio_tasks.uuid = _originals["uuid"]
    _enabled = False


# --- service task IDs ------------------------------------------------------------------


def _patch_task_ids() -> None:
    """(10) Task IDs from a counter: unique in the process, and all they are used for is a hash."""
    import itertools
    import types
    import uuid

    from libp2p.tools.anyio_service import tasks, trio_tasks

    _originals["uuid"] = trio_tasks.uuid
    counter = itertools.count(1)
    shim = types.SimpleNamespace(uuid4=lambda: uuid.UUID(int=next(counter)))
    tasks.uuid = trio_tasks.uuid = shim


# --- listener addresses ---------------------------------------------------------------


def _patch_listener_addrs() -> None:
    """(9) A listener's bound sockets do not move: answer from the last computation while the
    list of sockets is the same one."""
    from libp2p.transport.tcp import tcp

    orig = tcp.TCPListener.get_addrs
    _originals["TCPListener.get_addrs"] = orig

    def get_addrs(self: Any) -> tuple:
        key = tuple(id(listener.socket) for listener in self.listeners)
        cached = self.__dict__.get("_fastpath_addrs")
        if cached is None or cached[0] != key:
            cached = (key, orig(self))
            self.__dict__["_fastpath_addrs"] = cached
        return cached[1]

    tcp.TCPListener.get_addrs = get_addrs


# --- PubSub sender records -----------------------------------------------------------


def _patch_pubsub_records() -> None:
    """(6) Every GossipSub RPC carries its sender's signed peer record, and 0.8.1 checks it
    twice per RPC (pubsub.py:565, gossipsub.py:932): an Ed25519 verification and a
    peerstore update each time. A peer sends the same record until its addresses
    change, so a record byte-identical to the last one accepted from that peer is
    taken as accepted again without the work. Anything else goes to the library.
    """
    from libp2p.pubsub import gossipsub, pubsub

    orig = pubsub.maybe_consume_signed_record
    _originals["consume_record"] = orig

    def maybe_consume_signed_record(msg: Any, host: Any, peer_id: Any) -> bool:
        if not msg.HasField("senderRecord"):
            return True
        seen = host.__dict__.setdefault("_fastpath_sender_records", {})
        record = msg.senderRecord
        if seen.get(peer_id) == record:
            return True
        ok = orig(msg, host, peer_id)
        if ok:
            if len(seen) >= 4096:  # bounded: forget everyone rather than grow without limit
                seen.clear()
            seen[peer_id] = record
        return ok

    pubsub.maybe_consume_signed_record = maybe_consume_signed_record
    gossipsub.maybe_consume_signed_record = maybe_consume_signed_record


# --- Yamux ------------------------------------------------------------------------


def _patch_yamux() -> None:
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
        rx = _rx_for(reader)
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
            rw = _fast_noise_writer(conn.secured_conn)
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
                await _noise_send(rw, header, view[sent : sent + to_send])
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


# --- Noise ------------------------------------------------------------------------


def _chacha_aead(cipher_state: Any) -> Any | None:
    """The cryptography ChaCha20Poly1305 object inside a noiseprotocol CipherState, or None."""
    cipher = getattr(cipher_state, "cipher", None)
    if type(cipher).__name__ != "ChaCha20Cipher":
        return None
    aead = getattr(cipher, "cipher", None)
    if not (hasattr(aead, "encrypt_into") and hasattr(aead, "decrypt_into")):
        return None
    return aead


def _nonce(n: int) -> bytes:
    # noise/backends/default/ciphers.py ChaCha20Cipher.format_nonce
    return b"\x00\x00\x00\x00" + n.to_bytes(8, "little")


def _trio_socket_of(raw: Any) -> Any | None:
    """The trio socket under a RawConnection over TrioTCPStream, else None (generic reads)."""
    from libp2p.io.trio import TrioTCPStream

    tcp = getattr(raw, "stream", None)
    if type(tcp) is not TrioTCPStream:
        return None
    stream = getattr(tcp, "stream", None)
    if not isinstance(stream, trio.SocketStream):
        return None
    sock = getattr(stream, "socket", None)
    return sock if hasattr(sock, "recv_into") else None


class _NoiseRx:
    """Buffered reader of one Noise transport session (replaces msgio + SecureSession buffering).

    ``_buf[_start:_end]`` holds ciphertext received but not yet decrypted (always
    less than one whole message when we go back to the socket); ``_pt[_pt_start:
    _pt_end]`` holds the plaintext left over from a message a read consumed only
    part of.
    """

    def __init__(self, session: Any) -> None:
        from libp2p.io.exceptions import ConnectionClosedError, IncompleteReadError
        from libp2p.network.connection.exceptions import RawConnError

        self._IncompleteReadError = IncompleteReadError
        self._ConnectionClosedError = ConnectionClosedError
        self._RawConnError = RawConnError
        rw = session.conn
        self._raw = rw.read_writer.read_write_closer
        self._sock = _trio_socket_of(self._raw)
        self._cs = rw.noise_state.noise_protocol.cipher_state_decrypt
        # Buffers start small and grow with the traffic: most connections carry only
        # small control messages, and a process may hold thousands of them (netlab inproc).
        self._buf = bytearray(_RECV_INITIAL)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0
        self._eof = False
        self._last_recv_filled = False
        self._pt = bytearray(0)  # allocated (64 KiB) when a message is first read in part
        self._ptv = memoryview(self._pt)
        self._pt_start = 0
        self._pt_end = 0
        self._scratch = bytearray(0)
        # plaintext the stock SecureSession had buffered before we took over
        if session.low_watermark != session.high_watermark:
            left = session._drain(None)
            self._plaintext_buffer()
            self._ptv[: len(left)] = left
            self._pt_end = len(left)

    def _plaintext_buffer(self) -> memoryview:
        if not self._pt:
            self._pt = bytearray(_NOISE_MAX_MSG)
            self._ptv = memoryview(self._pt)
        return self._ptv

    def _grow(self, keep: int) -> None:
        """Double the receive buffer (up to its full size), keeping ``_buf[:keep]``."""
        size = min(_RECV_FULL, max(2 * len(self._buf), keep + 1))
        buf = bytearray(size)
        buf[:keep] = self._view[:keep]
        self._buf, self._view = buf, memoryview(buf)

    async def _fill(self) -> bool:
        """Receive more ciphertext; False at EOF."""
        keep = self._end - self._start
        if keep and self._start:  # move the partial message (< 64 KiB) to the front
            self._view[:keep] = self._view[self._start : self._end]
        self._start, self._end = 0, keep
        # Grow when a partial message fills the buffer, or the socket filled all we asked (bulk).
        if len(self._buf) < _RECV_FULL and (keep == len(self._buf) or self._last_recv_filled):
            self._grow(keep)
        space = len(self._buf) - keep
        if self._sock is not None:
            try:
                got = await self._sock.recv_into(self._view[keep:], space)
            except trio.ClosedResourceError:
                got = 0  # closed locally, as TrioTCPStream.read: EOF
            except OSError as exc:
                if exc.errno == errno.EBADF:
                    got = 0
                else:
                    raise self._ConnectionClosedError(
                        f"TCP connection reset by remote peer: {exc}", transport="tcp"
                    ) from exc
        else:
            data = await self._raw.read(min(space, RECV_SIZE))
            got = len(data)
            self._view[keep : keep + got] = data
        if not got:
            self._eof = True
            return False
        self._last_recv_filled = got == space
        self._end = keep + got
        return True

    async def _next_ciphertext(self) -> memoryview | None:
        """Next whole Noise message (a view into the receive buffer, valid until the next call)."""
        while True:
            avail = self._end - self._start
            if avail >= 2:
                s = self._start
                length = (self._buf[s] << 8) | self._buf[s + 1]
                if avail >= 2 + length:
                    if length < _NOISE_TAG:
                        raise self._RawConnError(f"Noise message of {length} bytes is shorter than its tag")
                    self._start = s + 2 + length
                    return self._view[s + 2 : s + 2 + length]
            if self._eof or not await self._fill():
                return None

    def _decrypt_into(self, ct: memoryview, out: memoryview) -> None:
        cs = self._cs
        n = cs.n
        if n >= _MAX_NONCE:
            raise self._RawConnError("Noise nonce depleted")
        aead = _chacha_aead(cs)
        try:
            if aead is not None:
                aead.decrypt_into(_nonce(n), ct, None, out)
            else:  # other cipher: the library's own decrypt (advances the nonce itself)
                out[:] = cs.decrypt_with_ad(None, bytes(ct))
                return
        except Exception as exc:  # cryptography InvalidTag: the connection is unusable
            raise self._RawConnError(f"Noise message failed authentication: {exc!r}") from exc
        cs.n = n + 1

    async def read(self, n: int, *, exact: bool, into: bytearray | None = None) -> bytes | bytearray | memoryview:
        """Up to ``n`` plaintext bytes, blocking until ``n`` (like SecureSession.read) or EOF.

        At EOF: ``exact`` raises IncompleteReadError (as io.utils.read_exactly);
        otherwise a partial result is returned, and IncompleteReadError only if
        nothing was read (as the stock msgio path did).
        """
        out = bytearray(n) if into is None else into
        ov = memoryview(out)[:n]
        got = 0
        left = self._pt_end - self._pt_start
        if left:
            take = min(left, n)
            ov[:take] = self._ptv[self._pt_start : self._pt_start + take]
            self._pt_start += take
            got = take
        while got < n:
            ct = await self._next_ciphertext()
            if ct is None:
                if exact or not got:
                    raise self._IncompleteReadError(
                        f"Connection closed during read operation: expected {n} bytes but received {got} bytes",
                        expected_bytes=n,
                        received_bytes=got,
                    )
                return bytes(ov[:got])
            plen = len(ct) - _NOISE_TAG
            need = n - got
            if plen <= need:
                self._decrypt_into(ct, ov[got : got + plen])
                got += plen
            else:
                ptv = self._plaintext_buffer()
                self._decrypt_into(ct, ptv[:plen])
                ov[got:n] = ptv[:need]
                self._pt_start, self._pt_end = need, plen
                got = n
        if into is not None:
            return ov
        del ov
        return bytes(out) if n <= _SMALL_READ else out

    async def read_exactly(self, n: int) -> bytes | bytearray | memoryview:
        if n <= 0:
            return b""
        return await self.read(n, exact=True)

    async def read_exactly_scratch(self, n: int) -> bytes | memoryview:
        """Like read_exactly, but large results are a view of a buffer reused by the next call.

        Only for Yamux.handle_incoming (yamux.py:1191, :1180), which copies every
        frame into its stream buffer before it reads again.
        """
        if n <= _SMALL_READ:
            return await self.read_exactly(n)
        if len(self._scratch) < n:
            self._scratch = bytearray(max(n, YAMUX_MAX_PAYLOAD))
        return await self.read(n, exact=True, into=self._scratch)

    async def read_available(self) -> bytes:
        """``read(None)``: leftover plaintext if any, else one whole message."""
        left = self._pt_end - self._pt_start
        if left:
            data = bytes(self._ptv[self._pt_start : self._pt_end])
            self._pt_start = self._pt_end = 0
            return data
        while True:
            ct = await self._next_ciphertext()
            if ct is None:
                raise self._IncompleteReadError(
                    "Connection closed during read operation", expected_bytes=2, received_bytes=0
                )
            plen = len(ct) - _NOISE_TAG
            if plen == 0:
                continue  # empty message: nothing to deliver
            out = bytearray(plen)
            self._decrypt_into(ct, memoryview(out))
            return bytes(out)


def _rx_for(session: Any) -> _NoiseRx | None:
    """The session's buffered reader, created on first use; None if not a Noise TCP session."""
    rx = getattr(session, "_fastpath_rx", None)
    if rx is not None:
        return rx or None
    rx = False
    try:
        from libp2p.security.noise.io import NoiseTransportReadWriter
        from libp2p.security.secure_session import SecureSession

        if isinstance(session, SecureSession) and type(session.conn) is NoiseTransportReadWriter:
            rx = _NoiseRx(session)
    except Exception:  # unexpected object layout: keep the stock path
        logger.debug("fast Noise reader unavailable for %r", session, exc_info=True)
        rx = False
    try:
        session._fastpath_rx = rx
    except AttributeError:
        return None
    return rx or None


def _patch_noise() -> None:
    from libp2p.security.noise import io as noise_io
    from libp2p.security.secure_session import SecureSession

    _originals["SecureSession.read"] = SecureSession.read
    _originals["write_msg"] = noise_io.NoiseTransportReadWriter.write_msg
    orig_read = SecureSession.read
    orig_write_msg = noise_io.NoiseTransportReadWriter.write_msg

    # (4) replaces SecureSession.read (secure_session.py:95) for Noise sessions:
    # same contract (n=None: what is buffered or one message; n>0: block until n
    # bytes or EOF), served from the buffered reader.
    async def read(self: Any, n: int | None = None) -> bytes:
        rx = _rx_for(self)
        if rx is None:
            return await orig_read(self, n)
        if n == 0:
            return b""
        if n is None or n < 0:
            return await rx.read_available()
        data = await rx.read(n, exact=False)
        return data if isinstance(data, bytes) else bytes(data)

    SecureSession.read = read

    # (5) replaces BaseNoiseMsgReadWriter.write_msg (noise/io.py:59) for transport
    # messages: the same 65519-byte chunks, each encrypted in place into one
    # buffer with its 2-byte length, then a single socket write for all of them.
    async def write_msg(self: Any, msg: bytes, prefix_encoded: bool = False) -> None:
        if prefix_encoded or _chacha_aead(self.noise_state.noise_protocol.cipher_state_encrypt) is None:
            await orig_write_msg(self, msg, prefix_encoded)
            return
        await _noise_send(self, b"", memoryview(msg).cast("B"))

    noise_io.NoiseTransportReadWriter.write_msg = write_msg


async def _noise_send(rw: Any, head: bytes, body: memoryview) -> None:
    """Encrypt ``head + body`` as stock would (65519-byte Noise messages) and send it in one write.

    ``rw`` is a NoiseTransportReadWriter whose cipher is ChaChaPoly. The batch is
    built in a per-connection buffer reused from write to write (a fresh
    1 MiB buffer per frame costs page faults), or a new one if a write is
    already in flight on this connection.
    """
    cs = rw.noise_state.noise_protocol.cipher_state_encrypt
    aead = _chacha_aead(cs)
    hlen = len(head)
    total = hlen + len(body)
    count = max(1, -(-total // _NOISE_MAX_PLAINTEXT))
    n = cs.n
    if n + count > _MAX_NONCE:
        raise RuntimeError("Noise nonce depleted")
    size = total + count * (2 + _NOISE_TAG)
    sending = getattr(rw, "_fastpath_sending", False)  # another write owns the reused buffer
    buf = None if sending else getattr(rw, "_fastpath_sendbuf", None)
    if buf is None or len(buf) < size:
        # grown geometrically up to _SENDBUF_SIZE, so a connection of small messages keeps a small one
        grown = max(size, _SENDBUF_INITIAL, 2 * len(buf) if buf is not None else 0)
        buf = bytearray(min(grown, _SENDBUF_SIZE) if size <= _SENDBUF_SIZE else size)
        if not sending and size <= _SENDBUF_SIZE:
            rw._fastpath_sendbuf = buf
    mine = not sending and buf is getattr(rw, "_fastpath_sendbuf", None)
    ov = memoryview(buf)
    pos = 0
    boff = 0  # offset in body of the next chunk's start
    for i in range(count):
        if i == 0 and hlen:
            chunk = head + bytes(body[: _NOISE_MAX_PLAINTEXT - hlen])  # at most 64 KiB copied
            boff = len(chunk) - hlen
        else:
            chunk = body[boff : boff + _NOISE_MAX_PLAINTEXT]
            boff += len(chunk)
        clen = len(chunk) + _NOISE_TAG
        buf[pos] = clen >> 8
        buf[pos + 1] = clen & 0xFF
        aead.encrypt_into(_nonce(n), chunk, None, ov[pos + 2 : pos + 2 + clen])
        n += 1
        pos += 2 + clen
    cs.n = n
    if mine:
        rw._fastpath_sending = True
    try:
        await rw.read_writer.read_write_closer.write(ov[:pos])
    finally:
        if mine:
            rw._fastpath_sending = False


def _fast_noise_writer(secured_conn: Any) -> Any | None:
    """The NoiseTransportReadWriter under a Noise SecureSession with ChaChaPoly, else None."""
    from libp2p.security.noise.io import NoiseTransportReadWriter
    from libp2p.security.secure_session import SecureSession

    if not isinstance(secured_conn, SecureSession):
        return None
    rw = secured_conn.conn
    if type(rw) is not NoiseTransportReadWriter:
        return None
    if _chacha_aead(rw.noise_state.noise_protocol.cipher_state_encrypt) is None:
        return None
    return rw
