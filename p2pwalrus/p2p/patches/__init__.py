"""Patches to py-libp2p, each pinned to the one version below, one module per subsystem patched.

Entry points (what p2p/host.py and p2p/__init__.py call):

- lean_import.install(): import libp2p without the transports and services we never use;
- fastpath.enable() / disable() / is_enabled(): a faster, wire-compatible data path, checked
  against the pinned version there and applied, in order, by yamux.py, noise.py, pubsub.py
  (sender records), tcp.py, tasks.py and notify.py;
- hardening.apply(): handler boundaries a peer cannot break through, applied, in order, by
  host.py (BasicHost stream handlers), pubsub.py (topic validators, push_msg) and swarm.py
  (inbound slots), sharing containment.py's log and counters.

Only the entry points check anything; the subsystem modules patch when told to.
"""

PINNED_LIBP2P_VERSION = "0.8.1"  # the one version every patch here is written against
