"""Patches to py-libp2p 0.8.1, each pinned to that version: a lean import (lean_import), a
faster wire-compatible data path (fastpath), and handler boundaries a peer cannot break
through (hardening)."""
