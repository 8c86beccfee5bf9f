"""The gateway: Walrus's publisher and aggregator HTTP API over one long-lived client.

Everything runs on the caller's trio loop: hypercorn's trio worker calls `Gateway.__call__`
(an ASGI app) in trio tasks, and those tasks use the same libp2p client as the refresh loop.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

import trio

from ..client.client import BlobExpiredError, BlobInvalidError, Client
from ..core.blob_id import blob_id_to_str, parse_blob_id
from ..core.placement import PlacementError
from ..core.storage_period import epochs_problem
from ..core.thresholds import max_faulty
from ..errors import (
    BlobNotFoundError,
    BlobTooLargeError,
    EncodingError,
    InvalidBlobIdError,
    NetworkConfigError,
    NotEnoughShardsError,
    P2PWalrusError,
)
from ..asgi_serve import handle_lifespan
from .asgi import (
    BadRange,
    HTTPError,
    Request,
    Response,
    Unsatisfiable,
    error_response,
    json_response,
    parse_range,
)
from ..client.chunked import BytesSource, ChunkedStoreResult, parse_if_file_manifest, store_stream, stream_chunks
from ..core.manifest import HEADER_LEN, FileManifest, default_chunk_size, needs_manifest
from .metrics import GatewayMetrics
from .walrus_json import publisher_store_json

logger = logging.getLogger("p2pwalrus.gateway")

IMMUTABLE = "public, max-age=31536000, immutable"
BUFFERED_BODY = 64 << 20  # a PUT body limit up to this is read whole before storing (nothing is stored
# of a body refused as too large); above it, or without a limit, the body is streamed as chunks


class _Prefixed:
    """A ChunkSource: bytes already read, then the rest of a body."""

    def __init__(self, prefix: bytes, rest):
        self.prefix, self.rest = memoryview(prefix), rest

    @property
    def seen(self) -> int:
        return self.rest.seen

    async def readinto(self, buf) -> int:
        k = min(len(buf), len(self.prefix))
        buf[:k] = self.prefix[:k]
        self.prefix = self.prefix[k:]
        return k + (await self.rest.readinto(buf[k:]) if k < len(buf) else 0)


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


# --- helpers -------------------------------------------------------------------------


class BlobCache:
    """LRU of decoded blobs, bounded in bytes."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.used = 0
        self.entries: OrderedDict[bytes, list] = OrderedDict()  # blob_id -> [data, end_epoch, checked_at]

    def get(self, blob_id: bytes) -> list | None:
        entry = self.entries.get(blob_id)
        if entry is not None:
            self.entries.move_to_end(blob_id)
        return entry

    def put(self, blob_id: bytes, data: bytes, end_epoch: int) -> None:
        if len(data) > self.capacity:
            return
        self.drop(blob_id)
        self.entries[blob_id] = [data, end_epoch, time.monotonic()]
        self.used += len(data)
        while self.used > self.capacity:
            _, (old, _, _) = self.entries.popitem(last=False)
            self.used -= len(old)

    def drop(self, blob_id: bytes) -> None:
        entry = self.entries.pop(blob_id, None)
        if entry is not None:
            self.used -= len(entry[0])


class RateLimiter:
    """A token bucket per client IP: `per_minute` tokens, refilled continuously."""

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self.buckets: dict[str, tuple[float, float]] = {}  # ip -> (tokens, last update)

    def take(self, ip: str) -> float:
        """0 if allowed, else the seconds until a token is available."""
        now = self.clock()
        tokens, last = self.buckets.get(ip, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self.buckets[ip] = (tokens - 1.0, now)
            return 0.0
        self.buckets[ip] = (tokens, now)
        if len(self.buckets) > 10_000:  # forget idle clients (their buckets are full again)
            horizon = self.capacity / self.rate
            self.buckets = {k: v for k, v in self.buckets.items() if now - v[1] < horizon}
        return (1.0 - tokens) / self.rate


def _leaf_errors(exc: BaseException):
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            yield from _leaf_errors(sub)
    else:
        yield exc


# Most specific meaning first: an exception group is answered by its most telling member.
def _insufficient_funds():
    from ..client.payments import InsufficientFundsError

    return InsufficientFundsError


_ERROR_MAP: list[tuple[type, int, str]] = [
    (_insufficient_funds(), 402, "payment_required"),
    (InvalidBlobIdError, 400, "bad_request"),
    (BlobTooLargeError, 413, "too_large"),
    (BlobNotFoundError, 404, "not_found"),
    (BlobExpiredError, 410, "expired"),
    (BlobInvalidError, 410, "invalid"),
    (NotEnoughShardsError, 503, "unavailable"),
    (PlacementError, 503, "unavailable"),
    (NetworkConfigError, 503, "unavailable"),
    (trio.TooSlowError, 504, "timeout"),
    (EncodingError, 400, "bad_request"),
    (P2PWalrusError, 500, "error"),
]


# What a 5xx reply says: fixed words, never an exception's text (which can name local
# paths, peers' replies or library internals); the detail goes to the gateway's log.
_SERVER_MESSAGES = {
    500: "internal error; the gateway's log has the details",
    503: "not enough storage nodes answered to complete the request; retry later",
    504: "the storage network did not answer in time; retry later",
}


def classify(exc: BaseException) -> tuple[int, str, str] | None:
    """(HTTP status, outcome label, message) for a client error, or None if it is a bug.

    4xx messages are this project's own words about the request; 5xx ones are fixed."""
    leaves = list(_leaf_errors(exc))
    for kind, status, outcome in _ERROR_MAP:
        for leaf in leaves:
            if isinstance(leaf, kind):
                if status >= 500:
                    return status, outcome, _SERVER_MESSAGES.get(status, _SERVER_MESSAGES[500])
                return status, outcome, str(leaf) or kind.__name__
    return None


def _take(limiter: "RateLimiter | None", req: Request, per_minute: int | None, what: str) -> None:
    if limiter is None:
        return
    wait = limiter.take(req.client_ip)
    if wait > 0:
        raise HTTPError(429, f"rate limit of {per_minute} {what} per minute exceeded; retry in {wait:.0f} s",
                        {"Retry-After": str(max(1, round(wait)))})


def _short(exc: BaseException) -> str:
    leaves = list(_leaf_errors(exc))
    return "; ".join(f"{type(e).__name__}: {str(e)[:300]}" for e in leaves[:3])


def _bool_param(query: dict, name: str) -> bool | None:
    if name not in query:
        return None
    value = query[name].strip().lower()
    if value in ("true", "1", "yes", ""):
        return True
    if value in ("false", "0", "no"):
        return False
    raise HTTPError(400, f"{name} must be true or false, got {query[name]!r}")


def _int_param(query: dict, name: str, default: int | None = None, minimum: int = 0) -> int:
    if name not in query:
        if default is None:
            raise HTTPError(400, f"missing query parameter {name}")
        return default
    text = query[name].strip()
    if not re.fullmatch(r"-?[0-9]{1,18}", text, re.ASCII):
        raise HTTPError(400, f"{name} must be an integer, got {query[name][:40]!r}")
    value = int(text)
    if value < minimum:
        raise HTTPError(400, f"{name} must be at least {minimum}, got {value}")
    return value


# --- the gateway ---------------------------------------------------------------------


class Gateway:
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
                found = (500, "error", _SERVER_MESSAGES[500])
            elif found[0] >= 500:
                logger.warning("%s %s: %d (%s)", req.method, req.path, found[0], _short(exc))
            resp = error_response(found[0], found[2])
        self._cors(req, resp)
        try:
            await resp.send(send)
        except Exception as exc:
            if resp.started:  # mid-body (a chunk of a file failed): the client gets a short body
                logger.warning("%s %s: body cut after %d bytes (%s)", req.method, req.path, resp.sent, _short(exc))
                raise
            found = classify(exc)
            if found is None:
                logger.exception("%s %s failed", req.method, req.path)
                found = (500, "error", _SERVER_MESSAGES[500])
            resp = error_response(found[0], found[2])
            self._cors(req, resp)
            await resp.send(send)
        self.metrics.bytes_out.inc(resp.sent)
        self.metrics.requests.labels(route, req.method, str(resp.status)).inc()
        self.metrics.latency.labels(route, req.method).observe(time.perf_counter() - t0)

    def _write_origin(self, req: Request) -> str | None:
        """The Access-Control-Allow-Origin a write from this request's origin gets, if any."""
        allowed = self.config.cors_write_origins
        origin = req.headers.get("origin")
        if "*" in allowed:
            return "*"
        return origin if origin and origin in allowed else None

    def _cors(self, req: Request, resp: Response) -> None:
        """Reads are open to any origin; writes only to the origins configured for them."""
        if req.method == "OPTIONS":
            return  # the preflight answer set its own
        if req.method in ("GET", "HEAD"):
            origin = "*"
        else:
            origin = self._write_origin(req)
        if origin is not None:
            resp.headers.setdefault("Access-Control-Allow-Origin", origin)
            resp.headers.setdefault("Access-Control-Expose-Headers", "Content-Length, Content-Range, ETag")
            if origin != "*":
                resp.headers.setdefault("Vary", "Origin")

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

    # --- publisher -------------------------------------------------------------------

    def _check_publisher_access(self, req: Request) -> None:
        """Authentication first: a stranger without the token must not use up the limiter's
        tokens of the clients that have it (nor learn how many are left)."""
        token = self.config.auth_token
        if token:
            given = req.headers.get("authorization", "")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode("utf-8", "replace"),
                                                                    token.encode()):
                raise HTTPError(401, "missing or wrong bearer token: send 'Authorization: Bearer <token>'",
                                {"WWW-Authenticate": 'Bearer realm="p2pwalrus"'})
        _take(self.limiter, req, self.config.rate_limit, "stores")

    def _check_read_access(self, req: Request) -> None:
        _take(self.read_limiter, req, self.config.read_rate_limit, "reads")

    async def put_blob(self, req: Request) -> Response:
        self._check_publisher_access(req)
        q = req.query
        epochs = _int_param(q, "epochs", 1, minimum=1)
        if why := epochs_problem(epochs, self.client.net.max_epochs_ahead):
            raise HTTPError(400, why)
        deletable, permanent = _bool_param(q, "deletable"), _bool_param(q, "permanent")
        if deletable and permanent:
            raise HTTPError(400, "a blob cannot be both deletable and permanent")
        force = bool(_bool_param(q, "force"))
        limit = self.config.max_body
        n = self.client.net.n_shards
        one_blob = default_chunk_size(n)
        source = None
        t0 = time.perf_counter()
        try:
            if limit is not None and limit <= BUFFERED_BODY:
                data = await req.body(limit, self.config.body_deadline)
            else:
                # Streamed: the first blob's worth is read; a body that ends within it is one
                # blob, a longer one goes on as chunks (never more than a few chunks in memory).
                source = req.body_source(limit, self.config.body_deadline)
                await source.check_declared()
                head = bytearray(min(one_blob + 1, source.declared + 1 if source.declared is not None else one_blob + 1))
                got = await source.readinto(memoryview(head))
                data = bytes(head[:got]) if got <= one_blob else None
                if data is None:
                    source = _Prefixed(bytes(head[:got]), source)
                del head
            if data is not None and not needs_manifest(len(data), data[:HEADER_LEN], n):
                result = await self.client.store(data, epochs=epochs, deletable=bool(deletable), force=force)
            else:
                result = await store_stream(self.client, source if data is None else BytesSource(data),
                                            epochs=epochs, deletable=bool(deletable), force=force)
        except Exception as exc:
            found = classify(exc)
            if isinstance(exc, HTTPError):
                found = (exc.status, "too_large" if exc.status == 413 else "bad_request", exc.message)
            outcome = found[1] if found else "error"
            self.metrics.stores.labels(outcome).inc()
            if outcome != "too_large":
                self._note("store", None, source.seen if source else None, outcome, t0)
            raise
        size = result.size
        self.metrics.bytes_in.inc(size)
        elapsed = time.perf_counter() - t0
        self.metrics.store_seconds.observe(elapsed)
        outcome = "already_certified" if result.already_certified else "newly_created"
        self.metrics.stores.labels(outcome).inc()
        self._note("store", result.blob_id, size, outcome, t0, shards=result.shards_confirmed,
                   end_epoch=result.certificate.end_epoch)
        if isinstance(result, ChunkedStoreResult):
            return json_response(publisher_store_json(result))
        if not result.already_certified:
            self.cache.put(result.blob_id, data, result.certificate.end_epoch)
            self._cache_gauges()
        return json_response(publisher_store_json(result))

    # --- aggregator ------------------------------------------------------------------

    def _cache_gauges(self) -> None:
        self.metrics.cache_bytes.set(self.cache.used)
        self.metrics.cache_entries.set(len(self.cache.entries))

    async def _cached(self, blob_id: bytes) -> bytes | None:
        entry = self.cache.get(blob_id)
        if entry is None:
            return None
        data, end_epoch, checked = entry
        if end_epoch <= self.client.net.current_epoch():
            self.cache.drop(blob_id)
            raise BlobExpiredError(f"blob {blob_id_to_str(blob_id)} expired at epoch {end_epoch}")
        if time.monotonic() - checked > self.config.recheck_after:
            try:
                cert = await self.client.certified(blob_id)  # invalid or expired since: refuse it
            except Exception:
                self.cache.drop(blob_id)
                self._cache_gauges()
                raise
            entry[1], entry[2] = cert.end_epoch, time.monotonic()
        return data

    async def fetch(self, blob_id: bytes) -> tuple[bytes, bool]:
        """The blob's bytes and whether they came from the cache; one network read per blob at a time."""
        while True:
            data = await self._cached(blob_id)
            if data is not None:
                return data, True
            pending = self._inflight.get(blob_id)
            if pending is None:
                break
            await pending.wait()  # then the cache has it, or the read failed and we try ourselves
        done = self._inflight[blob_id] = trio.Event()
        try:
            checked = getattr(self.client, "checked", None)
            if checked is None:  # a plain Client: look the certificate up first
                cert = await self.client.certified(blob_id)
                data = await self.client.read(blob_id)
            else:
                data = await self.client.read(blob_id)  # reads are one at a time per blob: no race on checked
                cert = checked.pop(blob_id, None) or await self.client.certified(blob_id)
            self.cache.put(blob_id, data, cert.end_epoch)
            self._cache_gauges()
            return data, False
        finally:
            del self._inflight[blob_id]
            done.set()

    async def _read(self, blob_id_text: str) -> tuple[bytes, bytes]:
        try:
            blob_id = parse_blob_id(blob_id_text)
        except InvalidBlobIdError as exc:
            raise HTTPError(400, str(exc)) from None
        t0 = time.perf_counter()
        try:
            data, hit = await self.fetch(blob_id)
        except Exception as exc:
            found = classify(exc)
            self.metrics.reads.labels(found[1] if found else "error").inc()
            self._note("read", blob_id, None, found[1] if found else "error", t0)
            raise
        if hit:
            self.metrics.reads.labels("cache_hit").inc()
        else:
            self.metrics.read_seconds.observe(time.perf_counter() - t0)
            self.metrics.reads.labels("ok").inc()
            self._note("read", blob_id, len(data), "ok", t0)
        return blob_id, data

    def _blob_headers(self, blob_id: bytes) -> dict[str, str]:
        return {"ETag": f'"{blob_id_to_str(blob_id)}"', "Cache-Control": IMMUTABLE, "Accept-Ranges": "bytes",
                "Content-Type": "application/octet-stream"}

    async def get_blob(self, req: Request) -> Response:
        self._check_read_access(req)
        text = req.path_params["blob_id"]
        inm = req.headers.get("if-none-match")
        if inm and req.method in ("GET", "HEAD"):  # content never changes under a blob ID
            try:
                bid = parse_blob_id(text)
            except InvalidBlobIdError as exc:
                raise HTTPError(400, str(exc)) from None
            tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
            if f'"{blob_id_to_str(bid)}"' in tags or "*" in tags:
                return Response(304, b"", {k: v for k, v in self._blob_headers(bid).items() if k != "Content-Type"}
                                | {"Content-Length": "0"})
        blob_id, data = await self._read(text)
        headers = self._blob_headers(blob_id)
        head = req.method == "HEAD"
        found = parse_if_file_manifest(data, blob_id)
        size = found.total_size if isinstance(found, FileManifest) else len(data)
        try:
            rng = None if head else parse_range(req.headers.get("range"), size)  # RFC 9110: GET only
        except Unsatisfiable:
            raise HTTPError(416, f"range not satisfiable for a blob of {size} bytes",
                            {"Content-Range": f"bytes */{size}"}) from None
        except BadRange as exc:
            raise HTTPError(400, f"bad Range header: {exc}") from None
        if isinstance(found, FileManifest):
            start, end = rng or (0, size - 1)
            if rng is not None:
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
            return self._file_response(206 if rng else 200, found, start, end, headers, omit_body=head)
        if rng is None:
            return Response(200, data, headers, omit_body=head)
        start, end = rng
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return Response(206, data[start:end + 1], headers)

    def _file_response(self, status: int, manifest: FileManifest, start: int, end: int, headers: dict,
                       omit_body: bool = False) -> Response:
        """Bytes [start, end] of a chunked file, streamed from only the chunks they lie in
        (each read through the cache, a few ahead)."""
        headers = headers | {"Content-Length": str(end - start + 1 if manifest.total_size else 0)}

        async def fetch(bid: bytes, _progress) -> bytes:
            t0 = time.perf_counter()
            data, hit = await self.fetch(bid)
            if not hit:
                self._note("read", bid, len(data), "ok", t0, chunk=True)
            return data

        async def stream(write) -> None:
            if manifest.total_size:
                await stream_chunks(self.client, manifest, write, start=start, end=end, fetch=fetch)

        return Response(status, b"", headers, omit_body=omit_body, stream=stream)

    async def get_byte_range(self, req: Request) -> Response:
        self._check_read_access(req)
        start = _int_param(req.query, "start")
        length = _int_param(req.query, "length", minimum=1)
        blob_id, data = await self._read(req.path_params["blob_id"])
        found = parse_if_file_manifest(data, blob_id)
        size = found.total_size if isinstance(found, FileManifest) else len(data)
        if start >= size:
            raise HTTPError(416, f"start {start} is past the end of a blob of {size} bytes",
                            {"Content-Range": f"bytes */{size}"})
        end = min(size, start + length)
        headers = self._blob_headers(blob_id) | {"Content-Range": f"bytes {start}-{end - 1}/{size}"}
        if isinstance(found, FileManifest):
            return self._file_response(200, found, start, end - 1, headers)
        return Response(200, data[start:end], headers)

    # --- the rest ----------------------------------------------------------------------

    async def preflight(self, req: Request) -> Response:
        """Reads may be made from any origin; PUT only from the configured write origins."""
        wanted = req.headers.get("access-control-request-method", "").strip().upper()
        write_origin = self._write_origin(req)
        methods = "GET, HEAD, OPTIONS" + (", PUT" if write_origin is not None else "")
        if wanted in ("", "GET", "HEAD"):
            origin = "*"
        else:
            origin = write_origin if wanted == "PUT" else None
        headers = {
            "Access-Control-Allow-Methods": methods,
            "Access-Control-Allow-Headers": "Authorization, Content-Type, Range, If-None-Match",
            "Access-Control-Max-Age": "86400",
        }
        if origin is not None:
            headers["Access-Control-Allow-Origin"] = origin
            if origin != "*":
                headers["Vary"] = "Origin"
        return Response(204, b"", headers)

    async def status(self, req: Request) -> Response:
        c, net = self.client, self.client.net
        smap = c.shard_map
        return json_response({
            "network": net.name,
            "n_shards": net.n_shards,
            "f": max_faulty(net.n_shards),
            "epoch": net.current_epoch(),
            "epoch_length": net.epoch_length,
            "genesis_time": net.genesis_time,
            "max_epochs_ahead": net.max_epochs_ahead,
            "live_nodes": len(c.records),
            "nodes": {p: {"shards": list(smap.shards_of(p)) if smap else []} for p in c.live_peers()},
            "shard_map_digest": smap.digest().hex() if smap else None,
            "prices": self.prices_json(),
            "last_refresh": self.last_refresh,
            "gateway": {"peer_id": c.peer_id, "publisher": self.config.publisher,
                        "aggregator": self.config.aggregator, "max_body": self.config.max_body,
                        "auth": bool(self.config.auth_token), "rate_limit_per_minute": self.config.rate_limit,
                        "cache_bytes": self.cache.used, "cache_capacity": self.cache.capacity,
                        "uptime": time.time() - self.started},
        })

    async def prometheus(self, req: Request) -> Response:
        body, ctype = self.metrics.exposition()
        return Response(200, body, {}, ctype)

    async def openapi(self, req: Request) -> Response:
        from .openapi import openapi_document

        doc = openapi_document(self.config)
        prices = self.prices_json()
        doc["info"]["x-prices"] = prices  # FROST per 1 MiB unit of encoded size: per epoch, and per write
        doc["info"]["description"] = (doc["info"].get("description", "") + " Storage costs storage_price_per_unit "
                                      f"({prices['storage_price_per_unit']} FROST) x units x epochs + "
                                      f"write_price_per_unit ({prices['write_price_per_unit']} FROST) x units, "
                                      "units being 1 MiB of encoded size, paid from the gateway's account.").strip()
        return json_response(doc)

    async def dashboard(self, req: Request) -> Response:
        """The page, filled with the current state (the first paint shows it; the script updates it)."""
        from .dashboard import render_page

        state = await self._dashboard_state()
        return Response(200, render_page(state["html"]).encode(), {"Cache-Control": "no-cache"},
                        "text/html; charset=utf-8")

    async def dashboard_state(self, req: Request) -> Response:
        return json_response(await self._dashboard_state(), headers={"Cache-Control": "no-cache"})

    async def _dashboard_state(self) -> dict:
        c = self.client
        smap = c.shard_map
        infos = await self.node_infos()
        nodes = []
        for peer in sorted(set(c.live_peers()) | set(infos)):
            info = infos.get(peer, {})
            extra = {k: v for k, v in info.items()
                     if isinstance(v, (int, float)) and any(w in k for w in ("repair", "challenge", "recover"))}
            for key in ("repair_stats", "repair"):
                if isinstance(info.get(key), dict):
                    extra.update({f"repair_{k}": v for k, v in info[key].items() if isinstance(v, (int, float))})
            if isinstance(info.get("challenges"), dict):  # holder -> {"passed": n, "failed": n}
                for res in info["challenges"].values():
                    for k, v in (res.items() if isinstance(res, dict) else ()):
                        if isinstance(v, (int, float)):
                            extra[f"challenges_{k}"] = extra.get(f"challenges_{k}", 0) + v
            nodes.append({
                "peer_id": peer,
                "reachable": "error" not in info,
                "error": info.get("error"),
                "shards": list(smap.shards_of(peer)) if smap and peer in c.records else info.get("shards", []),
                "blobs": info.get("blobs"),
                "certified_blobs": info.get("certified_blobs"),
                "bytes_used": info.get("bytes_used"),
                "live_seen": len(info.get("live", [])) if "live" in info else None,
                "store_requests": info.get("store_requests"),
                "certs_rejected": info.get("certs_rejected"),
                "repair": extra,
            })
        from .dashboard import fragments

        net = c.net
        state = {
            "network": net.name, "n_shards": net.n_shards, "epoch": net.current_epoch(),
            "live_nodes": len(c.records), "nodes": nodes, "recent": list(reversed(self.recent)),
            "cache": {"bytes": self.cache.used, "entries": len(self.cache.entries), "capacity": self.cache.capacity},
            "prices": self.prices_json(),
            "now": time.time(),
        }
        state["html"] = fragments(state, net.epoch_start, net.epoch_length)
        return state

    def _note(self, op: str, blob_id: bytes | None, size: int | None, outcome: str, t0: float, **extra) -> None:
        self.recent.append({"time": time.time(), "op": op, "blob_id": blob_id_to_str(blob_id) if blob_id else None,
                            "size": size, "status": outcome, "seconds": round(time.perf_counter() - t0, 4), **extra})
