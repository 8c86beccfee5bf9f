"""Trio services of a storage node: host, sliver store, membership, stream protocols."""

# Every module of this package imports libp2p: load it without the transports we never use
# (QUIC, WebSocket, AutoTLS, relay) before any of them does. See lean_libp2p.py.
from . import lean_libp2p as _lean_libp2p

_lean_libp2p.install()
