"""HTTP gateway: Walrus-compatible publisher and aggregator API, Prometheus metrics, dashboard."""

from .app import Gateway, GatewayConfig
from .server import serve_asgi, serve_gateway

__all__ = ["Gateway", "GatewayConfig", "serve_asgi", "serve_gateway"]
