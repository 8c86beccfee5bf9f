"""TCP listener addresses remembered (fast path patch 9), for py-libp2p 0.8.1's TCP transport.

What: ``TCPListener.get_addrs`` (tcp.py:306) answers from its last computation while the
listener's sockets are the same ones.

Why: every outgoing PubSub RPC asks for the host's addresses (``env_to_send_in_RPC``), and
each time that was a ``getsockname`` and a multiaddr parsed per listener: 7% of a 40-node
in-process testnet's CPU while it formed. Bound sockets do not move.

Pinned to libp2p 0.8.1: applied only by ``fastpath.enable()``, which checks the version.
"""

from __future__ import annotations

from typing import Any

_originals: dict[str, Any] = {}


def patch() -> None:
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


def unpatch() -> None:
    from libp2p.transport.tcp import tcp

    tcp.TCPListener.get_addrs = _originals["TCPListener.get_addrs"]
