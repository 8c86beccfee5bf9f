"""Trio services of a storage node: sliver store, membership, liveness, repair, epochs, ledger."""

# The libp2p floor first: it loads libp2p lean (p2p/patches/lean_import.py) before anything imports it.
from .. import p2p as _p2p  # noqa: F401
