"""HTTP gateway: Walrus-compatible publisher and aggregator API, Prometheus metrics, dashboard.

The names below load on first use (PEP 562): `p2pwalrus.cli` imports
`p2pwalrus.gateway.cli`, which imports this package, and an eager import here
would pull the whole gateway, the client and libp2p (about 1 s) into every CLI
command, even `--help`.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "Gateway": ".app",
    "GatewayConfig": ".app",
    "serve_asgi": "..asgi_serve",
    "serve_gateway": ".server",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
