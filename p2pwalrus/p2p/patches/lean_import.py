"""Import py-libp2p without the transports and services p2pwalrus never uses.

PINNED TO libp2p 0.8.1 (``patches.PINNED_LIBP2P_VERSION``, checked here from the
installed distribution's metadata, without importing libp2p; any other version
gets a plain, full import).

Why: importing anything under ``libp2p`` runs ``libp2p/__init__.py``, which
imports every transport and service the library has, whatever the caller
builds. For a CLI command that runs for a second, most of that is waste
(measured on 0.8.1, of ~0.55 s): QUIC pulls aioquic (and service_identity,
x509) through ``libp2p.custom_types`` -> ``transport.quic.stream`` and
through ``__init__`` -> ``transport.quic.utils``/``.transport``; the host
module pulls AutoTLS (``security.tls.autotls.acme``/``broker``: httpx,
requests, dnspython) and the whole circuit-relay package (only for
``relay.circuit_v2.nat.is_private_ip``, used by AutoTLS); and
``libp2p.transport``'s package imports the WebSocket transport; the host
module imports mDNS discovery (zeroconf); and the TCP transport's DNS
resolver makes dnspython import aioquic for DNS-over-QUIC. p2pwalrus
builds its hosts from TCP + Noise + Yamux only (p2p/host.py).

How: before the first ``import libp2p``, ``install()`` puts small stand-in
modules in ``sys.modules`` under those module names, exposing exactly the
names that 0.8.1's modules import from them. Each stand-in name is a
placeholder class: ``isinstance`` against it is always False (no such object
exists in our process), it can be named in an ``except`` clause, and calling
or instantiating it raises a RuntimeError that says why. Once libp2p has
imported, the stand-ins are taken out of ``sys.modules`` again, so that code
which explicitly imports e.g. ``libp2p.transport.quic.transport`` later gets
the real module; only the names bound during libp2p's own import stay
placeholders (so ``new_host(enable_quic=True)`` and AutoTLS fail loudly).

If libp2p is already imported, if the version differs, if
``P2PWALRUS_LEAN_LIBP2P=0`` is set, or if the import with stand-ins fails for
any reason, libp2p is imported in full, as without this module.
"""

from __future__ import annotations

import os
import sys
import types

from . import PINNED_LIBP2P_VERSION as PINNED_VERSION

# module name -> names other libp2p 0.8.1 modules import from it while libp2p loads
_STAND_INS: dict[str, tuple[str, ...]] = {
    # libp2p/__init__.py (is_quic_multiaddr is imported but never called there)
    "libp2p.transport.quic.utils": ("is_quic_multiaddr",),
    "libp2p.transport.quic.transport": ("QUICTransport",),
    # libp2p/custom_types.py: only for a type alias
    "libp2p.transport.quic.stream": ("QUICStream",),
    # libp2p/transport/__init__.py re-exports it; new_host imports the real one lazily for ws addrs
    "libp2p.transport.websocket.transport": ("WebsocketTransport",),
    # libp2p/host/basic_host.py: all three only inside BasicHost.initiate_autotls_procedure
    "libp2p.security.tls.autotls.acme": ("ACMEClient", "compute_b36_peer_id"),
    "libp2p.security.tls.autotls.broker": ("BrokerClient",),
    "libp2p.relay.circuit_v2.nat": ("is_private_ip",),
    # libp2p/host/basic_host.py: create_mdns_discovery only with new_host(enable_mDNS=True) (zeroconf)
    "libp2p.discovery.mdns.mdns": ("MDNSDiscovery", "create_mdns_discovery"),
}

# More stand-ins for a client process only (the CLI's network commands, which talk to
# p2pwalrus nodes only, whose keys are ed25519): P2PWALRUS_LEAN_LIBP2P=client. Saves about
# 50 ms of a command's start-up (cryptography's x509 and pycryptodome's RSA). A node keeps
# them real: it may meet stock peers that offer TLS or hold RSA keys.
_CLIENT_STAND_INS: dict[str, tuple[str, ...]] = {
    # libp2p/security/__init__.py imports the package; libp2p/__init__.py the transport, for
    # the default security options that new_host builds only without sec_opt (we pass Noise)
    "libp2p.security.tls": ("TLSTransport", "IdentityConfig", "create_tls_transport", "PROTOCOL_ID",
                            "TLSReadWriter", "generate_certificate", "create_cert_template",
                            "verify_certificate_chain", "pub_key_from_cert_chain", "SignedKey", "ALPN_PROTOCOL"),
    "libp2p.security.tls.transport": ("PROTOCOL_ID", "TLSTransport"),
    # RSA keys: libp2p/__init__.py (generate_new_rsa_identity), crypto/serialization.py and
    # records/* (deserialising and isinstance checks of a peer's RSA key)
    "libp2p.crypto.rsa": ("create_new_key_pair", "RSAPublicKey", "RSAPrivateKey"),
    # libp2p/network/swarm.py: private networks (a pre-shared key, pycryptodome's Salsa20); only
    # called when the swarm has a PSK, which our hosts never set
    "libp2p.security.pnet.protector": ("new_protected_conn",),
    # libp2p/__init__.py: SECIO only in new_host's default security options (we pass Noise);
    # its authenticated encryption is pycryptodome's
    "libp2p.security.secio.transport": ("ID", "Transport"),
    # libp2p/__init__.py: persistent peerstores (sqlite, LevelDB, RocksDB back ends), named only
    # there and never called by new_host (our hosts keep the in-memory PeerStore): ~30 ms
    "libp2p.peer.persistent": ("create_sync_peerstore", "create_async_peerstore", "create_sync_sqlite_peerstore",
                               "create_async_sqlite_peerstore", "create_sync_memory_peerstore",
                               "create_async_memory_peerstore", "create_sync_leveldb_peerstore",
                               "create_async_leveldb_peerstore", "create_sync_rocksdb_peerstore",
                               "create_async_rocksdb_peerstore"),
    # libp2p/metrics/swarm.py (Counter, for a class's annotations) and rcmgr/prometheus_exporter.py
    # (only when a resource manager is made with enable_prometheus, which ours never is):
    # prometheus_client and its http/exposition imports, ~20 ms. Taken out of sys.modules again
    # after libp2p's import like every stand-in, so an explicit import later gets the real one.
    "prometheus_client": ("Counter", "Histogram", "Gauge", "CONTENT_TYPE_LATEST", "CollectorRegistry",
                          "generate_latest", "start_http_server"),
}

_installed: bool | None = None  # None: not tried yet


def _placeholder(module: str, name: str) -> type:
    def refuse(cls, *args, **kwargs):
        raise RuntimeError(
            f"{module}.{name} was not loaded: p2pwalrus imports libp2p without QUIC, WebSocket, AutoTLS "
            "and relay (p2pwalrus/p2p/patches/lean_import.py); set P2PWALRUS_LEAN_LIBP2P=0 to load them"
        )

    # An Exception subclass, so that it also works where libp2p names it in an `except` clause.
    # from_bytes: the key classes' constructor that libp2p's key tables name at import time.
    return type(name, (Exception,), {"__new__": refuse, "from_bytes": classmethod(refuse), "__module__": module,
                                     "__doc__": "Not loaded (lean_libp2p)."})


class _NoDNSResolver:
    """What a lean client's swarm gets for a DNS resolver: it resolves nothing."""

    async def resolve(self, maddr, *args, **kwargs):
        raise RuntimeError(f"cannot resolve {maddr}: this p2pwalrus client loads no DNS resolver "
                           "(p2p/patches/lean_import.py); give /ip4 or /ip6 addresses")


def _installed_version() -> str | None:
    # First the pinned version's dist-info beside the package (found without importing it):
    # importlib.metadata costs ~10 ms of a CLI command's start-up (email, csv, zipfile).
    try:
        import importlib.util

        spec = importlib.util.find_spec("libp2p")
        if spec is not None and spec.origin:
            site = os.path.dirname(os.path.dirname(spec.origin))
            if os.path.isdir(os.path.join(site, f"libp2p-{PINNED_VERSION}.dist-info")):
                return PINNED_VERSION
    except Exception:
        pass
    try:
        from importlib.metadata import version

        return version("libp2p")
    except Exception:
        return None


def install() -> bool:
    """Import libp2p without its unused parts; True if that was done (now or before)."""
    global _installed
    if _installed is not None:
        return _installed
    _installed = False
    mode = os.environ.get("P2PWALRUS_LEAN_LIBP2P", "1")
    if "libp2p" in sys.modules or mode == "0":
        return False
    if _installed_version() != PINNED_VERSION:
        return False
    try:
        # multiaddr's DNS resolver (imported by the TCP transport) imports dnspython's
        # DNS-over-QUIC support, i.e. aioquic again. We never resolve over QUIC: tell dnspython
        # the feature is off (its documented workaround switch) before it first looks.
        # (A client stands in for the resolver below, and dns._features alone imports
        # importlib.metadata: ~10 ms.)
        if mode != "client" and "dns.quic" not in sys.modules:
            import dns._features

            dns._features.force("doq", False)
    except Exception:
        pass
    added = []
    stand_ins = dict(_STAND_INS, **(_CLIENT_STAND_INS if mode == "client" else {}))
    for modname, names in stand_ins.items():
        if modname in sys.modules:
            continue
        stand_in = types.ModuleType(modname, "Stand-in from p2pwalrus.p2p.patches.lean_import (module not loaded).")
        for name in names:
            setattr(stand_in, name, _placeholder(modname, name))
        sys.modules[modname] = stand_in
        added.append(modname)
    if mode == "client" and "multiaddr.resolvers" not in sys.modules:
        # The swarm and the TCP transport make a DNSResolver (dnspython) for /dns addresses;
        # a client dials the /ip4 addresses of node records only.
        stand_in = types.ModuleType("multiaddr.resolvers", "Stand-in from p2pwalrus.p2p.patches.lean_import.")
        stand_in.DNSResolver = _NoDNSResolver
        sys.modules["multiaddr.resolvers"] = stand_in
        added.append("multiaddr.resolvers")
    try:
        import libp2p  # noqa: F401  (runs libp2p/__init__.py, which imports the host, swarm, ...)
        import libp2p.host.basic_host  # noqa: F401
        import libp2p.transport.tcp.tcp  # noqa: F401

        if mode == "client":
            # What p2pwalrus's client imports from libp2p beyond that (records): loaded now,
            # while the stand-ins are in place, or they would load RSA.
            import libp2p.records.validator  # noqa: F401
            import libp2p.records.utils  # noqa: F401
            import libp2p.records.pubkey  # noqa: F401
    except Exception:
        # Something in this libp2p needs more than the stand-ins give: forget the half import.
        for name in [m for m in sys.modules if m == "libp2p" or m.startswith("libp2p.")]:
            del sys.modules[name]
        return False
    finally:
        for modname in added:
            if sys.modules.get(modname) is not None and getattr(sys.modules[modname], "__file__", None) is None:
                del sys.modules[modname]
    _installed = True
    return True
