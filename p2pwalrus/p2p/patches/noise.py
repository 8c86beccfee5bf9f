"""Buffered, batched Noise transport (fast path patches 4 and 5), for py-libp2p 0.8.1's Noise over TCP.

What it replaces (line numbers of 0.8.1):

4. ``SecureSession.read`` (secure_session.py:95), for Noise sessions, and through
   ``rx_for`` Yamux's ``read_exactly`` (yamux.py): the socket is read 256 KiB at a time with
   ``recv_into``, several Noise messages are parsed per read and each is decrypted straight
   into the caller's buffer. Stock did a 2-byte read per message length, 1-2 more reads for
   the body, and three copies (msgio ``read_exactly``, ``SecureSession`` bytearray,
   ``bytes()``).
5. ``NoiseTransportReadWriter.write_msg`` (noise/io.py:59): every 65519-byte chunk of a
   write is encrypted into one buffer and the batch goes out in one socket write, instead of
   one locked ``send_all`` per message. ``noise_send`` is the same path for Yamux's frame
   writes (yamux.py).

The messages on the wire are byte-for-byte what stock 0.8.1 sends for the same plaintext.
Buffers (receive, plaintext, reused send) start at a few KiB per connection and grow with
its traffic, so thousands of mostly idle connections in one process (``netlab inproc``)
cost little memory.

Pinned to libp2p 0.8.1: applied only by ``fastpath.enable()``, which checks the version.

The send side (``noise_send``, ``fast_noise_writer``) is in noise_send.py.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

import trio

from .noise_send import (  # noqa: F401  (fast_noise_writer: re-exported, yamux.py imports it from here)
    _MAX_NONCE, _NOISE_MAX_MSG, _NOISE_TAG, MAX_WRITE, _chacha_aead, _nonce, fast_noise_writer, noise_send,
)

RECV_SIZE = 256 * 1024  # bytes asked of the socket per read (once the buffer has grown)
_RECV_INITIAL = 8 * 1024  # a new connection's receive buffer; doubles under load
_RECV_FULL = RECV_SIZE + 65535 + 2  # a partial Noise message kept, plus one full socket read
_SMALL_READ = 4096  # reads up to this size return bytes, larger ones a bytearray (no extra copy)

logger = logging.getLogger("p2pwalrus.p2p.patches.fastpath")  # the fast path's one logger, as before the split

_originals: dict[str, Any] = {}


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
            self._scratch = bytearray(max(n, MAX_WRITE))
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


def rx_for(session: Any) -> _NoiseRx | None:
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


def patch() -> None:
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
        rx = rx_for(self)
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
        await noise_send(self, b"", memoryview(msg).cast("B"))

    noise_io.NoiseTransportReadWriter.write_msg = write_msg


def unpatch() -> None:
    from libp2p.security.noise import io as noise_io
    from libp2p.security.secure_session import SecureSession

    SecureSession.read = _originals["SecureSession.read"]
    noise_io.NoiseTransportReadWriter.write_msg = _originals["write_msg"]
