"""The Noise send side of fast path patch 5 (patches/noise.py applies it): a write's
65519-byte Noise messages encrypted into one reused per-connection buffer and sent in one
socket write, byte-for-byte what stock py-libp2p 0.8.1 sends for the same plaintext.
"""

from __future__ import annotations

from typing import Any

MAX_WRITE = 1 << 20  # largest plaintext the buffers are sized for: one Yamux DATA frame's data (yamux.py)
_SENDBUF_INITIAL = 8 * 1024  # a new connection's reused send buffer; grows under load

_NOISE_MAX_MSG = 65535  # 2-byte length prefix
_NOISE_TAG = 16
_NOISE_MAX_PLAINTEXT = _NOISE_MAX_MSG - _NOISE_TAG  # 65519, as go-libp2p and libp2p 0.8.1
_MAX_NONCE = 2**64 - 1
_SENDBUF_SIZE = MAX_WRITE + 64 * 1024  # reused per connection, at most: one 1 MiB frame, encrypted


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


async def noise_send(rw: Any, head: bytes, body: memoryview) -> None:
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


def fast_noise_writer(secured_conn: Any) -> Any | None:
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
