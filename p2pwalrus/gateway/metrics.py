"""Prometheus metrics of one gateway, in a registry of its own (several gateways can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class GatewayMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("p2pwalrus_gateway_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("p2pwalrus_gateway_request_seconds", "HTTP request latency by route",
                                 ["route", "method"], buckets=LATENCY_BUCKETS, registry=r)
        self.bytes_in = Counter("p2pwalrus_gateway_bytes_in", "Request body bytes received", registry=r)
        self.bytes_out = Counter("p2pwalrus_gateway_bytes_out", "Response body bytes sent", registry=r)
        self.stores = Counter("p2pwalrus_gateway_stores", "Store outcomes (newly_created, already_certified, "
                              "too_large, unavailable, error)", ["outcome"], registry=r)
        self.reads = Counter("p2pwalrus_gateway_reads", "Read outcomes (ok, cache_hit, not_found, expired, "
                             "invalid, unavailable, error)", ["outcome"], registry=r)
        self.store_seconds = Histogram("p2pwalrus_gateway_store_seconds", "Time to store a blob on the network",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.read_seconds = Histogram("p2pwalrus_gateway_read_seconds", "Time to read and decode a blob "
                                      "(cache misses only)", buckets=LATENCY_BUCKETS, registry=r)
        self.cache_bytes = Gauge("p2pwalrus_gateway_cache_bytes", "Bytes of decoded blobs in the cache", registry=r)
        self.cache_entries = Gauge("p2pwalrus_gateway_cache_entries", "Decoded blobs in the cache", registry=r)
        self.live_nodes = Gauge("p2pwalrus_gateway_live_nodes", "Live storage nodes at the last membership refresh",
                                registry=r)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
