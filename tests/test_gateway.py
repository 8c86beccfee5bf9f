"""The HTTP gateway, over real HTTP, against a real in-process testnet, all in one trio process."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import time
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from netlab.inprocess import inprocess_network
from p2pwalrus.core.blob_id import blob_id_to_str, parse_blob_id
from p2pwalrus.core.rs2 import compute_blob_id
from p2pwalrus.core.testing import inconsistency_proof_message, make_inconsistent_blob
from p2pwalrus.gateway import GatewayConfig, serve_gateway
from p2pwalrus.gateway.asgi import BadRange, Unsatisfiable, parse_range
from p2pwalrus.node.metrics import install_node_metrics

README = Path(__file__).resolve().parent.parent / "README.md"


@asynccontextmanager
async def running_gateway(net, config: GatewayConfig | None = None):
    async with trio.open_nursery() as nursery:
        gateway, urls = await nursery.start(serve_gateway, net, config or GatewayConfig(), "127.0.0.1:0")
        async with httpx.AsyncClient(base_url=urls[0], timeout=60.0) as http:
            yield gateway, http
        nursery.cancel_scope.cancel()


def store_requests(cluster) -> int:
    return sum(n.counters["store_requests"] for n in cluster.alive())


def assert_error(resp: httpx.Response, code: int, status: str) -> None:
    assert resp.status_code == code, (resp.status_code, resp.text)
    body = resp.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert err["code"] == code and err["status"] == status and err["details"] == [] and err["message"]


def test_parse_range_follows_rfc_9110():
    assert parse_range(None, 10) is None
    assert parse_range("bytes=2-4", 10) == (2, 4)
    assert parse_range("bytes=2-", 10) == (2, 9)
    assert parse_range("bytes=-3", 10) == (7, 9)
    assert parse_range("bytes=-30", 10) == (0, 9)
    assert parse_range("bytes=5-100", 10) == (5, 9)
    for ignored in ("items=0-1", "bytes=0-1,3-4"):  # another unit, several ranges: the whole body
        assert parse_range(ignored, 10) is None, ignored
    # Strict: a byte range that does not parse is refused (400), never guessed at nor a 500.
    for bad in ("bytes=4-2", "bytes=a-b", "bytes", "bytes=-", "bytes=1-2-3", "bytes=\u0663-5", "bytes=0-\u00b2",
                "bytes=+1-2", "bytes=1_0-20", "bytes= 1 2-3", "x" * 300):
        with pytest.raises(BadRange):
            parse_range(bad, 10)
    # Positions of many digits: never int() on them; past the end is 416, a long last byte clamps.
    assert parse_range("bytes=0-" + "9" * 200, 10) == (0, 9)
    assert parse_range("bytes=-" + "9" * 200, 10) == (0, 9)
    with pytest.raises(Unsatisfiable):
        parse_range("bytes=" + "9" * 200 + "-", 10)
    with pytest.raises(BadRange):
        parse_range("bytes=" + "9" * 5000 + "-", 10)
    for unsatisfiable, size in (("bytes=10-", 10), ("bytes=-0", 10), ("bytes=0-", 0), ("bytes=-5", 0)):
        with pytest.raises(Unsatisfiable):
            parse_range(unsatisfiable, size)


async def test_publisher_and_aggregator_over_http(tmp_path):
    data = os.urandom(1 << 20)
    with trio.fail_after(80):
        async with inprocess_network(5, 10, tmp_path) as cluster:
            async with running_gateway(cluster.net, GatewayConfig(max_body=2 << 20)) as (gw, http):
                # Store, then read back through the network (not the cache), byte-exact.
                t0 = time.perf_counter()
                r = await http.put("/v1/blobs", params={"epochs": 3}, content=data)
                store_s = time.perf_counter() - t0
                assert r.status_code == 200, r.text
                obj = r.json()["newlyCreated"]["blobObject"]
                bid = obj["blobId"]
                assert parse_blob_id(bid) and obj["size"] == len(data) and obj["encodingType"] == "RS2"
                assert obj["storage"]["endEpoch"] - obj["storage"]["startEpoch"] == 3 and obj["deletable"] is False
                assert re.fullmatch(r"0x[0-9a-f]{64}", obj["id"]) and obj["id"] != obj["storage"]["id"]
                assert r.json()["newlyCreated"]["resourceOperation"]["registerFromScratch"]["epochsAhead"] == 3
                assert r.json()["newlyCreated"]["cost"] == 0
                gw.cache.drop(parse_blob_id(bid))
                t0 = time.perf_counter()
                r = await http.get(f"/v1/blobs/{bid}")
                read_s = time.perf_counter() - t0
                assert r.status_code == 200 and r.content == data
                assert r.headers["content-length"] == str(len(data))
                assert r.headers["etag"] == f'"{bid}"'
                assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
                assert r.headers["content-type"] == "application/octet-stream"
                print(f"\n1 MiB through the gateway: store {store_s * 1000:.0f} ms, read {read_s * 1000:.0f} ms")

                # Ranges: single ranges are 206, unsatisfiable 416, malformed and multiple ignored.
                size = len(data)
                for header, (a, b) in {"bytes=100-199": (100, 199), "bytes=1048000-": (1048000, size - 1),
                                       "bytes=-10": (size - 10, size - 1), "bytes=5-99999999": (5, size - 1)}.items():
                    r = await http.get(f"/v1/blobs/{bid}", headers={"Range": header})
                    assert r.status_code == 206, header
                    assert r.content == data[a:b + 1] and r.headers["content-range"] == f"bytes {a}-{b}/{size}"
                for header in (f"bytes={size}-", "bytes=-0"):
                    r = await http.get(f"/v1/blobs/{bid}", headers={"Range": header})
                    assert_error(r, 416, "OUT_OF_RANGE")
                    assert r.headers["content-range"] == f"bytes */{size}"
                for header in ("bytes=0-1,5-6", "pages=1-2"):
                    r = await http.get(f"/v1/blobs/{bid}", headers={"Range": header})
                    assert r.status_code == 200 and r.content == data, header
                r = await http.get(f"/v1/blobs/{bid}/byte-range", params={"start": 10, "length": 20})
                assert r.status_code == 200 and r.content == data[10:30]
                r = await http.get(f"/v1/blobs/{bid}/byte-range", params={"start": size, "length": 1})
                assert r.status_code == 416
                assert_error(await http.get(f"/v1/blobs/{bid}/byte-range", params={"start": -1, "length": 1}),
                             400, "INVALID_ARGUMENT")

                # HEAD: the headers of GET, no body.
                r = await http.head(f"/v1/blobs/{bid}")
                assert r.status_code == 200 and r.content == b""
                assert r.headers["content-length"] == str(size) and r.headers["etag"] == f'"{bid}"'
                r = await http.get(f"/v1/blobs/{bid}", headers={"If-None-Match": f'"{bid}"'})
                assert r.status_code == 304

                # Storing it again: alreadyCertified, nothing uploaded.
                before = store_requests(cluster)
                r = await http.put("/v1/blobs?epochs=2", content=data)
                assert r.status_code == 200
                assert r.json() == {"alreadyCertified": {"blobId": bid, "event": {"txDigest": None, "eventSeq": None},
                                                         "endEpoch": obj["storage"]["endEpoch"]}}
                assert store_requests(cluster) == before

                # 400: bad blob ID and bad parameters.
                assert_error(await http.get("/v1/blobs/not-a-blob-id"), 400, "INVALID_ARGUMENT")
                assert_error(await http.put("/v1/blobs?epochs=zero", content=b"x"), 400, "INVALID_ARGUMENT")
                assert_error(await http.put("/v1/blobs?epochs=0", content=b"x"), 400, "INVALID_ARGUMENT")
                assert_error(await http.put("/v1/blobs?deletable=true&permanent=true", content=b"x"),
                             400, "INVALID_ARGUMENT")
                # 404: a blob nobody has.
                assert_error(await http.get(f"/v1/blobs/{blob_id_to_str(bytes(32))}"), 404, "NOT_FOUND")
                assert_error(await http.get("/nothing/here"), 404, "NOT_FOUND")
                r = await http.delete(f"/v1/blobs/{bid}")
                assert r.status_code == 405 and "GET" in r.headers["allow"]

                # 413: over the body limit, declared or streamed, refused without storing anything.
                before = store_requests(cluster)
                big = os.urandom((2 << 20) + 1)
                assert_error(await http.put("/v1/blobs", content=big), 413, "OUT_OF_RANGE")

                async def chunks():
                    for i in range(0, len(big), (256 << 10)):
                        yield big[i:i + (256 << 10)]

                assert_error(await http.put("/v1/blobs", content=chunks()), 413, "OUT_OF_RANGE")
                assert store_requests(cluster) == before
                # The connection is still usable after a refused body.
                assert (await http.get("/status")).status_code == 200

                # 410: expired (the gateway's clock is past the end epoch, before nodes collect it),
                # then invalid (the nodes have marked the blob invalid).
                small = await http.put("/v1/blobs?epochs=1&deletable=true", content=b"short-lived")
                small_obj = small.json()["newlyCreated"]["blobObject"]
                assert small_obj["deletable"] is True
                small_id = small_obj["blobId"]
                net = gw.client.net
                gw.client.net = dataclasses.replace(net, genesis_time=net.genesis_time - 5 * net.epoch_length)
                r = await http.get(f"/v1/blobs/{small_id}")
                assert_error(r, 410, "FAILED_PRECONDITION")
                assert "expired" in r.json()["error"]["message"]
                gw.client.net = net
                # Invalid: a blob encoded inconsistently, marked so by the nodes with its proof
                # (a bare claim without one is not believed: test_node_hostile.py).
                bad = make_inconsistent_blob(b"inconsistent" * 100, 10, row=1, column=2)
                await gw.client.store_encoded(bad, epochs=1)
                for node in cluster.alive():
                    node.store.set_state(bad.blob_id, {"invalid": True})
                    node.proofs[bad.blob_id] = inconsistency_proof_message(bad, 2)
                r = await http.get(f"/v1/blobs/{blob_id_to_str(bad.blob_id)}")
                assert_error(r, 410, "FAILED_PRECONDITION")
                assert "invalid" in r.json()["error"]["message"]

                # Status, OpenAPI, metrics, dashboard.
                st = (await http.get("/status")).json()
                assert st["live_nodes"] == 5 and st["n_shards"] == 10 and len(st["nodes"]) == 5
                api = (await http.get("/v1/api")).json()
                assert api["openapi"].startswith("3.") and {"/v1/blobs", "/v1/blobs/{blob_id}"} <= set(api["paths"])
                metrics = (await http.get("/metrics")).text
                assert 'p2pwalrus_gateway_stores_total{outcome="newly_created"} 2.0' in metrics
                assert 'p2pwalrus_gateway_stores_total{outcome="too_large"} 2.0' in metrics
                assert 'p2pwalrus_gateway_reads_total{outcome="expired"} 1.0' in metrics
                assert re.search(r'p2pwalrus_gateway_requests_total\{method="GET",route="/v1/blobs/\{blob_id\}",'
                                 r'status="206"\} 4\.0', metrics)
                assert "p2pwalrus_gateway_request_seconds_bucket" in metrics
                page = await http.get("/")
                assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
                assert "dashboard/state" in page.text and not re.search(r'(src|href)="https?://', page.text)
                state = (await http.get("/dashboard/state")).json()
                assert len(state["nodes"]) == 5 and all(n["reachable"] for n in state["nodes"])
                assert sorted(s for n in state["nodes"] for s in n["shards"]) == list(range(10))
                assert any(b["blob_id"] == bid and b["op"] == "store" and b["shards"] >= 7 for b in state["recent"])


async def test_auth_and_rate_limit_guard_the_publisher(tmp_path):
    with trio.fail_after(60):
        async with inprocess_network(4, 7, tmp_path) as cluster:
            config = GatewayConfig(auth_token="s3cret", rate_limit=3)
            async with running_gateway(cluster.net, config) as (gw, http):
                before = store_requests(cluster)
                r = await http.put("/v1/blobs", content=b"no token")
                assert_error(r, 401, "UNAUTHENTICATED")
                assert r.headers["www-authenticate"].startswith("Bearer")
                assert_error(await http.put("/v1/blobs", content=b"bad", headers={"Authorization": "Bearer nope"}),
                             401, "UNAUTHENTICATED")
                assert store_requests(cluster) == before
                ok = await http.put("/v1/blobs", content=b"with token", headers={"Authorization": "Bearer s3cret"})
                assert ok.status_code == 200 and "newlyCreated" in ok.json()
                # The refused strangers used none of the 3 stores a minute: two more pass, then 429.
                for i in range(2):
                    r = await http.put("/v1/blobs", content=b"more %d" % i, headers={"Authorization": "Bearer s3cret"})
                    assert r.status_code == 200, r.text
                r = await http.put("/v1/blobs", content=b"one too many", headers={"Authorization": "Bearer s3cret"})
                assert_error(r, 429, "RESOURCE_EXHAUSTED")
                assert int(r.headers["retry-after"]) >= 1
                # Reading needs neither.
                bid = ok.json()["newlyCreated"]["blobObject"]["blobId"]
                assert (await http.get(f"/v1/blobs/{bid}")).content == b"with token"


async def test_503_when_too_few_shards_are_reachable(tmp_path):
    data = os.urandom(100_000)
    with trio.fail_after(80):
        async with inprocess_network(5, 10, tmp_path) as cluster:
            async with running_gateway(cluster.net) as (gw, http):
                r = await http.put("/v1/blobs?epochs=2", content=data)
                bid = r.json()["newlyCreated"]["blobObject"]["blobId"]
                gw.cache.drop(parse_blob_id(bid))
                for i in (1, 2, 3, 4):  # node 0, the bootstrap peer, alone holds too few shards
                    await cluster.kill(i)
                # Before the gateway notices (its map still names the dead nodes) ...
                assert_error(await http.get(f"/v1/blobs/{bid}"), 503, "UNAVAILABLE")
                assert_error(await http.put("/v1/blobs", content=b"fresh data"), 503, "UNAVAILABLE")
                # ... and after the live set has shrunk to one node.
                with trio.fail_after(20):
                    while await gw.refresh() > 1:
                        await trio.sleep(0.5)
                assert_error(await http.get(f"/v1/blobs/{bid}"), 503, "UNAVAILABLE")
                assert_error(await http.put("/v1/blobs", content=b"more fresh data"), 503, "UNAVAILABLE")
                assert 'p2pwalrus_gateway_reads_total{outcome="unavailable"} 2.0' in (await http.get("/metrics")).text


def doc_recipes() -> str:
    text = README.read_text()
    start = text.index("## HTTP gateway")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end != -1 else None]
    blocks = re.findall(r"^```sh\n(.*?)^```", section, flags=re.S | re.M)
    assert len(blocks) >= 5, "the README's gateway section lost its recipes"
    return "\n".join(blocks)


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_curl_recipes_from_the_docs_and_node_metrics(tmp_path):
    script = doc_recipes()
    assert "GATEWAY=http://127.0.0.1:31415" in script
    work = tmp_path / "recipes"
    work.mkdir()
    with trio.fail_after(80):
        async with inprocess_network(4, 7, tmp_path / "net",
                                     configure=lambda node: install_node_metrics(node, "127.0.0.1:0")) as cluster:
            async with running_gateway(cluster.net, GatewayConfig(max_body=1 << 20)) as (gw, http):
                url = str(http.base_url).rstrip("/")
                run = script.replace("GATEWAY=http://127.0.0.1:31415", f"GATEWAY={url}")
                proc = await trio.run_process(["bash", "-euo", "pipefail", "-c", run], cwd=work,
                                              capture_stdout=True, capture_stderr=True, check=False)
                assert proc.returncode == 0, (proc.stdout.decode(), proc.stderr.decode())
                assert b"stored as " in proc.stdout
                assert (work / "hello.out").read_bytes() == b"hello from p2pwalrus\n"

                # curl sends `Expect: 100-continue` for a large upload: refused before the body is sent.
                before = store_requests(cluster)
                (work / "big.bin").write_bytes(os.urandom((1 << 20) + 10))
                proc = await trio.run_process(
                    ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT", "--upload-file", "big.bin",
                     f"{url}/v1/blobs"], cwd=work, capture_stdout=True, capture_stderr=True, check=False)
                assert proc.stdout == b"413", (proc.stdout, proc.stderr)
                assert store_requests(cluster) == before

            # Each node serves its own metrics from its trio loop.
            node = cluster.alive()[0]
            async with httpx.AsyncClient() as http:
                text = (await http.get(node.metrics_urls[0] + "/metrics")).text
            assert f'p2pwalrus_node_peers_live{{peer_id="{node.peer_id}"}} 4.0' in text
            assert f'p2pwalrus_node_shards_held{{peer_id="{node.peer_id}"}} {float(len(node.my_shards()))}' in text
            for name in ("slivers_stored", "bytes_on_disk", "certs_seen_total", "certs_rejected_total",
                         "store_requests_total"):
                assert f"p2pwalrus_node_{name}{{" in text, name
            assert re.search(r"p2pwalrus_node_slivers_stored\{[^}]*\} [1-9]", text)


async def test_the_dashboard_is_filled_on_first_paint_in_plain_words_and_head_works(tmp_path):
    with trio.fail_after(90):
        async with inprocess_network(4, 7, tmp_path) as cluster:
            async with running_gateway(cluster.net) as (gw, http):
                stored = (await http.put("/v1/blobs?epochs=2", content=os.urandom(3000))).json()
                bid = stored["newlyCreated"]["blobObject"]["blobId"]
                page = (await http.get("/")).text
                # The tables are in the HTML itself: no waiting for the script's first poll.
                nodes = page[page.index('<tbody id="nodes">'):page.index("</tbody>")]
                assert nodes.count("<tr>") == 4
                for node in cluster.alive():
                    assert node.peer_id[:16] in nodes
                assert "nothing to repair" in nodes or "repairing" in nodes
                recent = page[page.index('<tbody id="recent">'):]
                assert bid in recent and ("ago" in recent or "just now" in recent)
                assert ">stored<" in recent and "shards)" in page
                # No raw key=value pairs, no Unix timestamps.
                assert not re.search(r"repair_\w+=|challenges_\w+=", page)
                assert not re.search(r"\b1[0-9]{9}(\.[0-9]+)?\b", page)
                assert "ends in" in page
                # The script gets the same fragments, rendered again.
                state = (await http.get("/dashboard/state")).json()
                assert set(state["html"]) == {"net", "epoch", "live", "cache", "nodes", "recent"}
                assert bid in state["html"]["recent"]
                # HEAD on every GET route: headers of the GET, no body, not 405.
                for path in ("/metrics", "/", "/status", "/dashboard/state", "/v1/api"):
                    r = await http.head(path)
                    assert r.status_code == 200 and r.content == b"", path
                    assert int(r.headers["content-length"]) > 0
                assert (await http.request("DELETE", "/metrics")).status_code == 405


async def test_only_a_gateway_with_local_files_reads_or_writes_a_path(tmp_path):
    """?path=FILE (store) and ?out=FILE (read) are `p2pwalrus daemon`'s (its Unix socket is its
    user's only): a TCP gateway refuses them before reading or writing anything; with
    local_files the file is stored as its bytes, and a read fills an empty file only."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(os.urandom(30_000))
    with trio.fail_after(60):
        async with inprocess_network(4, 7, tmp_path) as cluster:
            async with running_gateway(cluster.net) as (gw, http):
                before = store_requests(cluster)
                r = await http.put("/v1/blobs", params={"path": str(secret)})
                assert_error(r, 400, "INVALID_ARGUMENT")
                assert "does not read local files" in r.json()["error"]["message"]
                assert store_requests(cluster) == before
                stored = (await http.put("/v1/blobs", content=b"public")).json()["newlyCreated"]["blobObject"]["blobId"]
                target = tmp_path / "target.bin"
                target.write_bytes(b"")
                r = await http.get(f"/v1/blobs/{stored}", params={"out": str(target)})
                assert_error(r, 400, "INVALID_ARGUMENT")
                assert target.read_bytes() == b""
            async with running_gateway(cluster.net, GatewayConfig(local_files=True, cache_bytes=0)) as (gw, http):
                assert_error(await http.put("/v1/blobs", params={"path": "relative.bin"}), 400, "INVALID_ARGUMENT")
                assert_error(await http.put("/v1/blobs", params={"path": str(tmp_path / "none")}), 400,
                             "INVALID_ARGUMENT")
                r = await http.put("/v1/blobs", params={"path": str(secret), "epochs": "2"})
                assert r.status_code == 200, r.text
                bid = r.json()["newlyCreated"]["blobObject"]["blobId"]
                assert bid == blob_id_to_str(compute_blob_id(secret.read_bytes(), 7))
                assert (await http.get(f"/v1/blobs/{bid}")).content == secret.read_bytes()
                out = tmp_path / "out.bin"
                out.write_bytes(b"")
                r = await http.get(f"/v1/blobs/{bid}", params={"out": str(out)})
                assert r.status_code == 200 and r.json() == {"size": 30_000}, r.text
                assert out.read_bytes() == secret.read_bytes()
                r = await http.get(f"/v1/blobs/{bid}", params={"out": str(out)})  # not empty now: refused
                assert_error(r, 400, "INVALID_ARGUMENT")
                assert out.read_bytes() == secret.read_bytes()
                # A larger one, in full.
                big = tmp_path / "big.bin"
                big.write_bytes(os.urandom(900_001))
                r = await http.put("/v1/blobs", params={"path": str(big)})
                big_id = r.json()["newlyCreated"]["blobObject"]["blobId"]
                out2 = tmp_path / "out2.bin"
                out2.write_bytes(b"")
                r = await http.get(f"/v1/blobs/{big_id}", params={"out": str(out2)})
                assert r.status_code == 200 and r.json() == {"size": 900_001}, r.text
                assert out2.read_bytes() == big.read_bytes()
                # The blob's parts are written as they were read: a blob shorter than a
                # manifest's header, and a chunked file (its manifest parsed, every chunk written).
                out3 = tmp_path / "out3.bin"
                out3.write_bytes(b"")
                r = await http.get(f"/v1/blobs/{stored}", params={"out": str(out3)})
                assert r.status_code == 200 and r.json() == {"size": 6}, r.text
                assert out3.read_bytes() == b"public"
                chunked = os.urandom(2_100_000)  # more than one blob at 7 shards: chunks and a manifest
                r = await http.put("/v1/blobs", content=chunked)
                assert r.status_code == 200, r.text
                file_id = r.json()["newlyCreated"]["blobObject"]["blobId"]
                out4 = tmp_path / "out4.bin"
                out4.write_bytes(b"")
                r = await http.get(f"/v1/blobs/{file_id}", params={"out": str(out4)})
                assert r.status_code == 200 and r.json() == {"size": 2_100_000}, r.text
                assert out4.read_bytes() == chunked
