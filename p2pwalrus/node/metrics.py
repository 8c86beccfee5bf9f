"""Prometheus metrics of a storage node, served from the node's own trio loop.

`install_node_metrics(node, "host:port")` registers a service in `node.extra_services`;
when the node starts, it serves /metrics with hypercorn's trio worker in the node's
nursery (no thread, no second event loop). Values are read from the node when scraped.
"""

from __future__ import annotations

import logging

import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

logger = logging.getLogger("p2pwalrus.node.metrics")

# node.counters entries that are gauges rather than monotonic counters
_GAUGE_COUNTERS = {"queue"}


def _number(v) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    return None


def _repair_stats(node) -> dict:
    stats = getattr(node, "repair_stats", None)
    if stats is None:
        stats = getattr(getattr(node, "repair", None), "stats", None)
    if stats is not None and not isinstance(stats, dict):
        stats = vars(stats) if hasattr(stats, "__dict__") else None
    return dict(stats or {})


def _challenges(node) -> dict[str, dict]:
    ch = getattr(node, "challenge_stats", None)
    if ch is None:
        ch = getattr(getattr(node, "repair", None), "challenges", None)
    return {str(k): dict(v) for k, v in (ch or {}).items() if isinstance(v, dict)}


class NodeCollector:
    """Reads the node's state at each scrape."""

    def __init__(self, node):
        self.node = node

    def collect(self):
        node = self.node
        peer = getattr(node, "peer_id", "")
        labels = {"peer_id": peer}

        def gauge(name, doc, value):
            g = GaugeMetricFamily(f"p2pwalrus_node_{name}", doc, labels=list(labels))
            g.add_metric(list(labels.values()), value)
            return g

        members = getattr(node, "members", None)
        live = len(members.live.peer_ids()) if members is not None else 0
        yield gauge("peers_live", "Nodes in this node's live set", live)
        yield gauge("shards_held", "Shards this node holds in the current shard map", len(node.my_shards()))
        store = node.store
        try:
            blobs = store.list_blobs()
            slivers = sum(len(kinds) for b in blobs[:100_000] for kinds in store.shards_stored(b).values())
            yield gauge("blobs_stored", "Blobs with at least one file on this node", len(blobs))
            yield gauge("slivers_stored", "Primary and secondary slivers on disk", slivers)
            yield gauge("bytes_on_disk", "Bytes of all stored files", store.bytes_used())
            cap = store.capacity_bytes
            if cap is not None:
                yield gauge("capacity_bytes", "Configured storage capacity", cap)
        except Exception as exc:  # a closed store during shutdown
            logger.debug("store metrics unavailable: %s", exc)
        yield gauge("certified_blobs", "Blobs with a valid availability certificate", len(node.certs))
        yield gauge("epoch", "Current epoch", node.net.current_epoch())
        for key, value in dict(getattr(node, "counters", {})).items():
            v = _number(value)
            if v is None:
                continue
            if key in _GAUGE_COUNTERS:
                yield gauge(key, f"node.counters[{key!r}]", v)
            else:
                c = CounterMetricFamily(f"p2pwalrus_node_{key}", f"node.counters[{key!r}]", labels=list(labels))
                c.add_metric(list(labels.values()), v)
                yield c
        for key, value in _repair_stats(node).items():
            v = _number(value)
            if v is None:
                continue
            if key in ("queue", "last_sweep_seconds", "full_redundancy_at"):
                yield gauge(f"repair_{key}", f"repair {key}", v)
            else:
                c = CounterMetricFamily(f"p2pwalrus_node_repair_{key}", f"repair {key}", labels=list(labels))
                c.add_metric(list(labels.values()), v)
                yield c
        challenges = _challenges(node)
        if challenges:
            c = CounterMetricFamily("p2pwalrus_node_challenges", "Storage challenges this node sent, by holder "
                                    "and result", labels=["peer_id", "holder", "result"])
            for holder, results in sorted(challenges.items()):
                for result, count in sorted(results.items()):
                    v = _number(count)
                    if v is not None:
                        c.add_metric([peer, holder, str(result)], v)
            yield c


def node_registry(node) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(node))
    return registry


def metrics_app(registry: CollectorRegistry):
    """A minimal ASGI app: GET /metrics (or /) answers the exposition of `registry`."""

    from ..asgi_serve import handle_lifespan

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await handle_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"] in ("/metrics", "/") and scope["method"] in ("GET", "HEAD"):
            status, body, ctype = 200, generate_latest(registry), CONTENT_TYPE_LATEST
        else:
            status, body, ctype = 404, b"not found: scrape /metrics\n", "text/plain"
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    return app


def _check_addr(addr: str) -> str:
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"metrics address {addr!r} must be HOST:PORT")
    return addr


def install_node_metrics(node, addr: str):
    """Serve the node's metrics at http://addr/metrics once the node runs; returns the registry.

    The service runs in the node's nursery; the bound URLs are kept in `node.metrics_urls`.
    """
    bind = _check_addr(addr)
    registry = node_registry(node)
    app = metrics_app(registry)

    async def run() -> None:
        from ..asgi_serve import serve_asgi

        try:
            async with trio.open_nursery() as nursery:
                urls = await nursery.start(serve_asgi, app, bind)
                node.metrics_urls = urls
                logger.info("metrics on %s", " ".join(f"{u}/metrics" for u in urls))
        except* OSError as group:  # the node keeps running without its metrics endpoint
            logger.error("cannot serve metrics on %s: %s", bind, group.exceptions[0])

    def start(node_, nursery) -> None:
        nursery.start_soon(run)

    node.extra_services.append(start)
    node.metrics_registry = registry
    return registry
