"""The gateway: Walrus's publisher and aggregator HTTP API over one long-lived client.

Everything runs on the caller's trio loop: hypercorn's trio worker calls `Gateway.__call__`
(an ASGI app) in trio tasks, and those tasks use the same libp2p client as the refresh loop.

This module holds the app's frame (configuration, membership refresh, routing, replies to
failures); the routes' own code is in blob_routes.py, status_routes.py and sites.py, the
rules on access in access.py, failures' meanings in outcomes.py, parameters in params.py.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass

import trio

from ..client.client import Client
from ..core.blob_id import blob_id_to_str
from ..errors import NotEnoughShardsError
from ..asgi_serve import handle_lifespan
from .asgi import HTTPError, Request, error_response
from .metrics import GatewayMetrics
from .access import AccessRules, RateLimiter, take_token
from .blob_routes import BUFFERED_BODY, IMMUTABLE, BlobCache, BlobRoutes
from .outcomes import SERVER_MESSAGES, classify, leaf_errors, short_error
from .params import bool_param, int_param
from .status_routes import StatusRoutes

__all__ = ["BUFFERED_BODY", "IMMUTABLE", "AccessRules", "BlobCache", "BlobRoutes", "Gateway", "GatewayClient",
           "GatewayConfig", "RateLimiter", "SERVER_MESSAGES", "StatusRoutes", "bool_param", "classify", "int_param",
           "leaf_errors", "short_error", "take_token"]

logger = logging.getLogger("p2pwalrus.gateway")


@dataclass
class GatewayConfig:
    publisher: bool = True
    aggregator: bool = True
    max_body: int | None = None  # bytes of a PUT body (None: no limit; larger than a blob is chunked)
    auth_token: str | None = None  # bearer token required to PUT, if set
    rate_limit: int | None = None  # PUTs per minute per client IP, if set
    read_rate_limit: int | None = None  # blob reads (GET, HEAD, byte-range) per minute per client IP, if set
    max_connections: int = 256  # open HTTP connections; more are answered 503 and closed
    read_timeout: float = 30.0  # s without a byte from a client: its connection is closed
    body_deadline: float = 120.0  # s for a whole PUT body, however it is trickled (408 after)
    cors_write_origins: tuple[str, ...] = ()  # origins allowed to PUT from a browser ("*": any); none by default
    cache_bytes: int = 64 << 20  # decoded blobs kept for range and repeated reads
    refresh_interval: float = 10.0  # membership refresh
    recheck_after: float = 30.0  # a cached blob's certificate is checked again after this
    node_info_ttl: float = 2.0  # node infos for the dashboard are reused this long
    recent: int = 50  # blobs listed on the dashboard
    # PUT /v1/blobs?path=FILE stores a file this process reads itself: only `p2pwalrus daemon`,
    # whose Unix socket only its user reaches (never on a TCP gateway: anyone could read files).
    local_files: bool = False


class GatewayClient(Client):
    """A client that outlives membership changes.

    Certificates are judged by the gateway's own shard map and, as storage nodes do, by the
    few maps it held before (Client.past_views), so that one certified just before churn
    still verifies.
    """

    def __init__(self, net, host, keypair):
        super().__init__(net, host, keypair)
        self.checked: dict[bytes, object] = {}  # blob_id -> certificate of the last certified() call

    async def certified(self, blob_id: bytes):
        cert = await super().certified(blob_id)
        self.checked[blob_id] = cert  # read() checks the certificate: the gateway reuses it for its cache
        if len(self.checked) > 1024:
            self.checked.pop(next(iter(self.checked)))
        return cert


class Gateway(AccessRules, BlobRoutes, StatusRoutes):
    """The ASGI app: routes a request to its handler (blob_routes, status_routes, sites), maps
    failures to replies (outcomes) and keeps the membership fresh."""

    def __init__(self, client: Client, config: GatewayConfig | None = None):
        self.client = client
        self.config = config or GatewayConfig()
        self.metrics = GatewayMetrics()
        self.cache = BlobCache(self.config.cache_bytes)
        self.limiter = RateLimiter(self.config.rate_limit) if self.config.rate_limit else None
        self.read_limiter = RateLimiter(self.config.read_rate_limit) if self.config.read_rate_limit else None
        self.recent: deque[dict] = deque(maxlen=self.config.recent)
        self.started = time.time()
        self.prices: dict | None = None  # as the committee vouches, refreshed with the membership
        self.last_refresh: float | None = None
        self._inflight: dict[bytes, trio.Event] = {}
        self._infos: tuple[float, dict] = (0.0, {})
        self._infos_lock = trio.Lock()
        self._refresh_lock = trio.Lock()

    # --- membership ----------------------------------------------------------------

    async def refresh(self) -> int:
        """Pull the live set into a fresh record table and swap it in whole.

        Requests in flight keep a consistent view; nodes that left are forgotten (the
        client itself only ever adds). If the configured bootstrap peers are all down,
        the peers known from the last refresh are asked instead.
        """
        async with self._refresh_lock:
            c = self.client
            nets = [c.net]
            known = [a for signed in c.records.values() for a in signed.record.addrs[:1]]
            if known:
                nets.append(c.net.with_bootstrap(known))
            last: Exception | None = None
            for net in nets:
                probe = Client(net, c.host, c.keypair)
                if c.epochs is not None:
                    probe.epochs = c.epochs  # the verified chain so far: the probe pulls only what is new
                try:
                    await probe.refresh_membership()
                except Exception as exc:  # try the next source
                    last = exc
                    continue
                old = c.shard_map
                c.records, c.shard_map = probe.records, probe.shard_map
                if isinstance(c, GatewayClient):
                    c.known_peers.update(probe.records)
                c.remember_view(old)
                self.last_refresh = time.time()
                self.metrics.live_nodes.set(len(c.records))
                await self._refresh_prices()
                return len(c.records)
            raise last or NotEnoughShardsError("no bootstrap peer answered")

    async def _refresh_prices(self) -> None:
        """The prices the committee vouches for and the gateway account's balance, for /status
        and /v1/api (one account query per refresh, on a network with a ledger)."""
        if self.client.net.genesis is None:
            return
        try:
            with trio.move_on_after(5):
                quote = await self.client.quote(0, 1)
                if quote is not None:
                    self.prices = {"storage_price_per_unit": quote.cost.storage_price,
                                   "write_price_per_unit": quote.cost.write_price,
                                   "unit_bytes": 1 << 20, "account": quote.address, "balance": quote.balance,
                                   "updated": time.time()}
        except Exception as exc:  # prices stay as last seen; a store asks again anyway
            logger.info("price refresh failed: %s", exc)

    def prices_json(self) -> dict:
        g = self.client.net.genesis
        if g is None:
            return {"storage_price_per_unit": 0, "write_price_per_unit": 0, "unit_bytes": 1 << 20,
                    "ledger": False}
        return {"ledger": True, **(self.prices or {"storage_price_per_unit": g.storage_price,
                                                   "write_price_per_unit": g.write_price, "unit_bytes": 1 << 20})}

    async def refresh_loop(self) -> None:
        while True:
            await trio.sleep(self.config.refresh_interval)
            try:
                await self.refresh()
            except Exception as exc:
                logger.warning("membership refresh failed: %s", exc)

    async def node_infos(self) -> dict[str, dict]:
        async with self._infos_lock:
            at, infos = self._infos
            if time.monotonic() - at > self.config.node_info_ttl:
                infos = await self.client.node_infos()
                self._infos = (time.monotonic(), infos)
            return infos

    # --- ASGI ------------------------------------------------------------------------

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await handle_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        req = Request.from_scope(scope, receive)
        t0 = time.perf_counter()
        route, handler = self._route(req)
        try:
            if handler is None:
                raise HTTPError(404, f"no route for {req.method} {req.path}")
            resp = await handler(req)
        except HTTPError as exc:
            resp = error_response(exc.status, exc.message, exc.headers)
        except Exception as exc:
            found = classify(exc)
            if found is None:
                logger.exception("%s %s failed", req.method, req.path)
                found = (500, "error", SERVER_MESSAGES[500])
            elif found[0] >= 500:
                logger.warning("%s %s: %d (%s)", req.method, req.path, found[0], short_error(exc))
            resp = error_response(found[0], found[2])
        self._cors(req, resp)
        try:
            await resp.send(send)
        except Exception as exc:
            if resp.started:  # mid-body (a chunk of a file failed): the client gets a short body
                logger.warning("%s %s: body cut after %d bytes (%s)", req.method, req.path, resp.sent, short_error(exc))
                raise
            found = classify(exc)
            if found is None:
                logger.exception("%s %s failed", req.method, req.path)
                found = (500, "error", SERVER_MESSAGES[500])
            resp = error_response(found[0], found[2])
            self._cors(req, resp)
            await resp.send(send)
        self.metrics.bytes_out.inc(resp.sent)
        self.metrics.requests.labels(route, req.method, str(resp.status)).inc()
        self.metrics.latency.labels(route, req.method).observe(time.perf_counter() - t0)

    def _route(self, req: Request):
        """(route label, handler) for a request; a handler of None answers 404."""
        path, method = req.path, req.method
        if method == "OPTIONS":
            return "preflight", self.preflight
        fixed = {
            "/": {"GET": self.dashboard},
            "/dashboard/state": {"GET": self.dashboard_state},
            "/status": {"GET": self.status},
            "/metrics": {"GET": self.prometheus},
            "/v1/api": {"GET": self.openapi},
        }
        if self.config.publisher:
            fixed["/v1/blobs"] = {"PUT": self.put_blob}
        table, label = fixed.get(path), path
        if table is None and self.config.aggregator and path.startswith("/v1/blobs/"):
            rest = path[len("/v1/blobs/"):]
            if rest.endswith("/byte-range") and rest.count("/") == 1:
                req.path_params["blob_id"] = rest[: -len("/byte-range")]
                table, label = {"GET": self.get_byte_range}, "/v1/blobs/{blob_id}/byte-range"
            elif rest and "/" not in rest:
                req.path_params["blob_id"] = rest
                table, label = {"GET": self.get_blob, "HEAD": self.get_blob}, "/v1/blobs/{blob_id}"
        if table is None:  # quilts and sites: gateway/sites.py
            from .sites import route as quilt_route

            table, label = quilt_route(self, req) or (None, label)
        if table is None:
            return "other", None
        handler = table.get(method)
        if handler is None and method == "HEAD" and "GET" in table:
            get = table["GET"]

            async def head(req):  # every header of the GET, no body (RFC 9110 section 9.3.2)
                resp = await get(req)
                resp.omit_body = True
                return resp

            return label, head
        if handler is None:
            allow = ", ".join(sorted(table))

            async def not_allowed(_req):
                raise HTTPError(405, f"{method} is not allowed on {path}; use {allow}", {"Allow": allow})

            return label, not_allowed
        return label, handler


    def _note(self, op: str, blob_id: bytes | None, size: int | None, outcome: str, t0: float, **extra) -> None:
        self.recent.append({"time": time.time(), "op": op, "blob_id": blob_id_to_str(blob_id) if blob_id else None,
                            "size": size, "status": outcome, "seconds": round(time.perf_counter() - t0, 4), **extra})
