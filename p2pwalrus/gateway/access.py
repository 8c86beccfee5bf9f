"""Who may use the gateway for what: the publisher's bearer token, rate limits per client IP,
and the CORS origins reads and writes are open to.
"""

from __future__ import annotations

import hmac
import time

from .asgi import HTTPError, Request, Response


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


def take_token(limiter: "RateLimiter | None", req: Request, per_minute: int | None, what: str) -> None:
    if limiter is None:
        return
    wait = limiter.take(req.client_ip)
    if wait > 0:
        raise HTTPError(429, f"rate limit of {per_minute} {what} per minute exceeded; retry in {wait:.0f} s",
                        {"Retry-After": str(max(1, round(wait)))})


class AccessRules:
    """Gateway methods: the bearer token and rate limits, CORS answers."""

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
        take_token(self.limiter, req, self.config.rate_limit, "stores")

    def _check_read_access(self, req: Request) -> None:
        take_token(self.read_limiter, req, self.config.read_rate_limit, "reads")
