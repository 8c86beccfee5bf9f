"""The libp2p floor: host, identity, framing, request/response calls and protocol IDs, and
the py-libp2p patches (``patches/``). Node and client both stand on it; it knows neither."""

# Every module of this package imports libp2p: load it without the transports we never use
# (QUIC, WebSocket, AutoTLS, relay) before any of them does. See patches/lean_import.py.
from .patches import lean_import as _lean_import

_lean_import.install()
