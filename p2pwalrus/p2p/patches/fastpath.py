"""Runtime speed-ups for py-libp2p 0.8.1's TCP + Noise + Yamux data path (DESIGN 6).

``enable()`` patches the library in this process (idempotent), ``disable()`` undoes it.
Every change is wire-compatible with unpatched peers: the Noise messages on the wire are
byte-for-byte what stock 0.8.1 sends for the same Yamux frames, and Yamux frames are only
made larger (stock readers accept DATA frames up to ``MAX_WINDOW_SIZE``, 16 MiB, and never
send more than the window we grant). The initial Yamux window (256 KiB) is deliberately
left alone: raising it breaks other implementations and gains nothing.

The patches, each in the module of the py-libp2p subsystem it replaces a piece of, applied
in this order:

- yamux.py: (1) 1 MiB Yamux frames instead of 64 KiB; (2) window updates at half the
  window, as go-yamux; (3) ``Yamux._write_frame`` without its per-frame debug work;
  (4) Yamux's ``read_exactly`` served by the buffered Noise reader; (6)
  ``YamuxStream.write`` without two copies of every byte, one write at a time per stream;
  (7) ``YamuxStream.send_window`` wakes a writer waiting for window.
- noise.py: (4) buffered Noise reads (``SecureSession.read``: 256 KiB ``recv_into``,
  several messages decrypted per read straight into the caller's buffer); (5) batched
  Noise writes (one socket write per batch of 65519-byte messages).
- pubsub.py: (8) a sender's signed peer record byte-identical to the last one accepted
  from that peer is not checked again; (13) RPCs queued for one peer are sent as one.
- tcp.py: (9) ``TCPListener.get_addrs`` remembered while its sockets stay the same;
  (14) ``BasicHost.get_addrs`` remembered while the transport addresses stay the same.
- tasks.py: (10) the service manager's task IDs from a counter, not ``uuid.uuid4()``;
  (12) a task's parent found by lookup, not by walking the service's task tree.
- notify.py: (11) stream opened/closed notifications skip the library's no-op notifees
  (a nursery and a task per notifee for every stream, for nothing).

Pinned to libp2p 0.8.1: the version is checked here, once, for all of them; on any other
version ``enable()`` warns and patches nothing. ``P2PWALRUS_FASTPATH=0`` in the environment
leaves the library stock.
"""

from __future__ import annotations

import logging
import os
import warnings

from . import PINNED_LIBP2P_VERSION, noise, notify, pubsub, tasks, tcp, yamux
from .noise import RECV_SIZE
from .yamux import YAMUX_MAX_PAYLOAD

__all__ = ["RECV_SIZE", "SUPPORTED_LIBP2P_VERSION", "YAMUX_MAX_PAYLOAD", "disable", "enable", "is_enabled",
           "libp2p_version"]

SUPPORTED_LIBP2P_VERSION = PINNED_LIBP2P_VERSION

logger = logging.getLogger(__name__)

_enabled = False


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
    yamux.patch()
    noise.patch()
    pubsub.patch_records()
    pubsub.patch_batching()
    tcp.patch()
    tasks.patch()
    notify.patch()
    _enabled = True
    logger.debug("libp2p %s transport fast path enabled", version)
    return True


def disable() -> None:
    """Undo ``enable()`` (for tests and benchmarks); sessions already patched keep their buffers."""
    global _enabled
    if not _enabled:
        return
    yamux.unpatch()
    noise.unpatch()
    pubsub.unpatch_records()
    pubsub.unpatch_batching()
    tcp.unpatch()
    tasks.unpatch()
    notify.unpatch()
    _enabled = False
