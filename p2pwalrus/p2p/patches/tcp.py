"""TCP listener addresses remembered (fast path patch 9), and the host's (14), for py-libp2p
0.8.1's TCP transport and BasicHost.

What: ``TCPListener.get_addrs`` (tcp.py:306) answers from its last computation while the
listener's sockets are the same ones; ``BasicHost.get_addrs`` (basic_host.py:492) answers
from its last computation while the transport addresses are the very same objects and no
observed address is confirmed (otherwise it computes as before).

Why: every outgoing PubSub RPC asks for the host's addresses (``env_to_send_in_RPC``), and
each time that was a ``getsockname`` and a multiaddr parsed per listener: 7% of a 40-node
in-process testnet's CPU while it formed. Bound sockets do not move. Then the host still
built and parsed each ``/p2p/<id>`` address again: 4% of 100 in-process nodes' main loop.

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

    from libp2p.host.basic_host import BasicHost

    orig_host = BasicHost.get_addrs
    _originals["BasicHost.get_addrs"] = orig_host

    def host_get_addrs(self: Any) -> list:
        observed = self._observed_addr_manager
        if self._addrs_factory is not None or (observed is not None and observed.addrs()):
            return orig_host(self)
        # The key holds the transport addresses themselves (not their ids, which a freed
        # object's successor could take): equal while the listeners' cached tuples stand.
        candidates = tuple(self.get_transport_addrs())
        cached = self.__dict__.get("_fastpath_host_addrs")
        if cached is None or len(cached[0]) != len(candidates) or any(a is not b for a, b in zip(cached[0], candidates)):
            cached = (candidates, orig_host(self))
            self.__dict__["_fastpath_host_addrs"] = cached
        return list(cached[1])

    BasicHost.get_addrs = host_get_addrs


def unpatch() -> None:
    from libp2p.host.basic_host import BasicHost
    from libp2p.transport.tcp import tcp

    tcp.TCPListener.get_addrs = _originals["TCPListener.get_addrs"]
    BasicHost.get_addrs = _originals["BasicHost.get_addrs"]
