"""Hostile HTTP clients: the gateway bounds time, connections and rates, checks the token
before the limiter, parses Range strictly, and never answers with an exception's text."""

from __future__ import annotations

import os

import trio

from netlab.inprocess import inprocess_network
from p2pwalrus.errors import NotEnoughShardsError
from p2pwalrus.gateway import GatewayConfig
from tests.test_gateway import assert_error, running_gateway


def _port(http) -> int:
    return int(str(http.base_url).rstrip("/").rsplit(":", 1)[1])


async def _raw(port: int):
    return await trio.open_tcp_stream("127.0.0.1", port)


async def _read_reply(stream, limit: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection (bounded in time)."""
    out = b""
    with trio.fail_after(limit):
        while True:
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return out
            if not chunk:
                return out
            out += chunk


async def _get_on(stream, path: str = "/status") -> bytes:
    """One keep-alive request on an open connection; the head and body of its reply."""
    await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    got = b""
    with trio.fail_after(10):
        while b"\r\n\r\n" not in got:
            got += await stream.receive_some(65536)
        head, _, body = got.partition(b"\r\n\r\n")
        length = int([ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")][0])
        while len(body) < length:
            body += await stream.receive_some(65536)
    return head


async def test_range_auth_order_read_limits_cors_and_no_exception_text(tmp_path):
    data = os.urandom(5000)
    with trio.fail_after(90):
        async with inprocess_network(4, 7, tmp_path) as cluster:
            config = GatewayConfig(auth_token="s3cret", rate_limit=1, read_rate_limit=30)
            async with running_gateway(cluster.net, config) as (gw, http):
                auth = {"Authorization": "Bearer s3cret"}
                # Authentication before the limiter: strangers get 401, however many, and do not
                # use up the one store a minute of the client with the token.
                for _ in range(5):
                    assert_error(await http.put("/v1/blobs", content=b"x"), 401, "UNAUTHENTICATED")
                r = await http.put("/v1/blobs", content=data, headers=auth)
                assert r.status_code == 200, r.text
                bid = r.json()["newlyCreated"]["blobObject"]["blobId"]
                assert_error(await http.put("/v1/blobs", content=b"y", headers=auth), 429, "RESOURCE_EXHAUSTED")
                # CORS: reads from any origin; writes from none unless configured.
                origin = {"Origin": "https://evil.example"}
                r = await http.get(f"/v1/blobs/{bid}", headers=origin)
                assert r.headers["access-control-allow-origin"] == "*"
                r = await http.put("/v1/blobs", content=b"z", headers=origin | auth)
                assert "access-control-allow-origin" not in r.headers
                r = await http.options("/v1/blobs", headers=origin | {"Access-Control-Request-Method": "PUT"})
                assert r.status_code == 204 and "access-control-allow-origin" not in r.headers
                assert "PUT" not in r.headers["access-control-allow-methods"]
                r = await http.options(f"/v1/blobs/{bid}", headers=origin | {"Access-Control-Request-Method": "GET"})
                assert r.headers["access-control-allow-origin"] == "*"
                # Range: strict, 400 or 416, never 500, whatever the digits.
                for header, code in ((b"bytes=\xd9\xa3-5", 400), ("bytes=" + "9" * 5000 + "-", 400),
                                     ("bytes=" + "9" * 100 + "-", 416), ("bytes=0-" + "9" * 100, 206),
                                     ("bytes=5-2", 400), ("bytes=\u00b2-3".encode("utf-8"), 400), ("bytes", 400)):
                    r = await http.get(f"/v1/blobs/{bid}", headers={"Range": header})
                    assert r.status_code == code, (header[:30], r.status_code, r.text[:200])
                for params in ({"start": "\u0663", "length": "1"}, {"start": "9" * 5000, "length": "1"}):
                    r = await http.get(f"/v1/blobs/{bid}/byte-range", params=params)
                    assert_error(r, 400, "INVALID_ARGUMENT")
                # A bad blob ID: our words, the input cut short, no library's exception text.
                r = await http.get("/v1/blobs/" + "z" * 5000)
                assert_error(r, 400, "INVALID_ARGUMENT")
                assert len(r.text) < 400 and "5000 characters" in r.text
                # 5xx: fixed words, no exception text, no local path.
                real_read = gw.client.read

                async def leaky_read(blob_id, *a, **k):
                    raise NotEnoughShardsError(f"only 2 shards; node said OSError('/srv/secret/{os.getpid()}/x')")

                gw.cache.entries.clear()
                gw.cache.used = 0
                gw.client.read = leaky_read
                r = await http.get(f"/v1/blobs/{bid}")
                assert_error(r, 503, "UNAVAILABLE")
                assert "/srv/secret" not in r.text and "OSError" not in r.text

                async def buggy_read(blob_id, *a, **k):
                    raise KeyError(f"{os.getcwd()}/store/blob")

                gw.client.read = buggy_read
                r = await http.get(f"/v1/blobs/{bid}")
                assert_error(r, 500, "INTERNAL")
                assert os.getcwd() not in r.text and "KeyError" not in r.text
                gw.client.read = real_read
                # Reads are rate-limited too.
                gw.read_limiter.capacity = 0.0
                gw.read_limiter.buckets.clear()
                assert_error(await http.get(f"/v1/blobs/{bid}"), 429, "RESOURCE_EXHAUSTED")
            config = GatewayConfig(cors_write_origins=("https://app.example",))
            async with running_gateway(cluster.net, config) as (gw, http):
                mine = {"Origin": "https://app.example"}
                r = await http.options("/v1/blobs", headers=mine | {"Access-Control-Request-Method": "PUT"})
                assert r.headers["access-control-allow-origin"] == "https://app.example"
                assert "PUT" in r.headers["access-control-allow-methods"]
                r = await http.put("/v1/blobs", content=b"from the app", headers=mine)
                assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
                r = await http.put("/v1/blobs", content=b"from elsewhere", headers={"Origin": "https://evil.example"})
                assert "access-control-allow-origin" not in r.headers


async def test_trickled_bodies_silent_clients_and_connection_floods_are_cut_off(tmp_path):
    with trio.fail_after(90):
        async with inprocess_network(4, 7, tmp_path) as cluster:
            config = GatewayConfig(body_deadline=1.0, read_timeout=2.0, max_connections=4)
            async with running_gateway(cluster.net, config) as (gw, http):
                port = _port(http)
                # A PUT whose body trickles: 408 once the body deadline has passed.
                s = await _raw(port)
                await s.send_all(b"PUT /v1/blobs HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"a" * 10)
                t0 = trio.current_time()
                reply = await _read_reply(s)
                assert reply.startswith(b"HTTP/1.1 408"), reply[:100]
                assert trio.current_time() - t0 < 8
                await s.aclose()
                # A client that sends half a request line and goes silent: closed after read_timeout.
                s = await _raw(port)
                await s.send_all(b"GET /stat")
                reply = await _read_reply(s)
                assert b"200" not in reply
                await s.aclose()
            async with running_gateway(cluster.net, GatewayConfig(max_connections=4)) as (gw, http):
                port = _port(http)
                # A cap on connections: four held ones, each served a request first (so each counts).
                held = []
                for _ in range(4):
                    c = await _raw(port)
                    assert b" 200 " in await _get_on(c)
                    held.append(c)
                extra = await _raw(port)
                reply = await _read_reply(extra)
                assert reply.startswith(b"HTTP/1.1 503"), reply[:100]
                assert b"too many open connections" in reply
                await extra.aclose()
                # A slot freed is served again (once the server has seen the close: retried).
                await held.pop().aclose()
                with trio.fail_after(10):
                    while True:
                        c = await _raw(port)
                        try:
                            head = await _get_on(c)
                        except (trio.BrokenResourceError, ValueError, IndexError):
                            head = b""
                        await c.aclose()
                        if b" 200 " in head:
                            break
                        await trio.sleep(0.1)
                for c in held:
                    await c.aclose()
