"""Quilts and sites through the gateway, over real HTTP, against a real in-process testnet:
Walrus's quilt routes, a published site served at /sites/{id}/, and that site opened in
headless Chromium with its links and images working."""

from __future__ import annotations

import json
import os
import random
import re
import struct
import zlib
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import trio

from netlab.inprocess import inprocess_network
from p2pwalrus.client.client import open_client
from p2pwalrus.client.site import SiteManifest, content_type, publish_directory
from p2pwalrus.core import quilt as q
from p2pwalrus.core.blob_id import blob_id_to_str
from p2pwalrus.gateway import GatewayConfig, serve_gateway
from p2pwalrus.gateway.sites import parse_multipart
from tests.test_dashboard_screenshot import CHROMIUM, chromium, decode_png


@asynccontextmanager
async def running_gateway(net, config: GatewayConfig | None = None):
    async with trio.open_nursery() as nursery:
        gateway, urls = await nursery.start(serve_gateway, net, config or GatewayConfig(), "127.0.0.1:0")
        async with httpx.AsyncClient(base_url=urls[0], timeout=60.0) as http:
            yield gateway, http, urls[0].rstrip("/")
        nursery.cancel_scope.cancel()


def store_requests(cluster) -> int:
    return sum(n.counters["store_requests"] for n in cluster.alive())


def png(width: int, height: int, pixel) -> bytes:
    """An RGB PNG; `pixel(x, y)` gives each pixel's (r, g, b)."""
    rows = b"".join(b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(width)) for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


RED, BLUE, GREEN = (220, 20, 30), (20, 40, 220), (20, 200, 60)


def make_site(root: Path) -> dict[str, bytes]:
    """A site with nested directories, relative links, solid images (for pixel checks) and a
    noise image too large for a quilt at 7 shards (stored as a blob of its own)."""
    noise = os.urandom(3 * 230 * 230)
    files = {
        "index.html": b"""<!doctype html><html><head><title>home</title>
<link rel="stylesheet" href="css/site.css"></head><body>
<h1>Home</h1><p><a id="guide" href="docs/guide/">the guide</a></p>
<img id="red" src="img/red.png" width="200" height="200">
<img id="noise" src="img/noise.png" width="230" height="230">
<script>window.addEventListener('load', () => { document.title = 'loaded:' +
  [...document.images].map(i => i.id + '=' + i.naturalWidth).join(','); });</script>
</body></html>""",
        "css/site.css": b"body { background: #ffffff; margin: 0; font-family: sans-serif; } img { display: block; }",
        "img/red.png": png(200, 200, lambda x, y: RED),
        "img/noise.png": png(230, 230, lambda x, y: noise[3 * (y * 230 + x):3 * (y * 230 + x) + 3]),
        "docs/guide/index.html": b"""<!doctype html><html><head><title>guide</title>
<link rel="stylesheet" href="../../css/site.css"></head><body>
<p><a id="home" href="../../">home</a> <a id="page" href="more/page.html">more</a></p>
<img id="blue" src="../../img/deep/blue.png" width="150" height="150">
<img id="green" src="green.png" width="100" height="100">
<script>window.addEventListener('load', () => { document.title = 'loaded:' +
  [...document.images].map(i => i.id + '=' + i.naturalWidth).join(','); });</script>
</body></html>""",
        "docs/guide/green.png": png(100, 100, lambda x, y: GREEN),
        "docs/guide/more/page.html": b"<!doctype html><html><body><p>deep page</p></body></html>",
        "img/deep/blue.png": png(150, 150, lambda x, y: BLUE),
        "data/notes.txt": "plain text, UTF-8: \u00e9\u00e8\n".encode(),
    }
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return files


def test_multipart_parser_takes_curl_forms_and_refuses_truncated_ones():
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"a.txt\"; filename=\"x\"\r\n"
            b"Content-Type: text/plain\r\n\r\nhello\r\n--XyZ\r\n"
            b"Content-Disposition: form-data; name=\"_metadata\"\r\n\r\n[]\r\n--XyZ--\r\n")
    assert parse_multipart(body, b"XyZ") == [("a.txt", "x", b"hello"), ("_metadata", None, b"[]")]
    from p2pwalrus.gateway.asgi import HTTPError

    for bad in (body[:-9], body.replace(b"\r\n\r\nhello", b"hello"), b"nothing"):
        with pytest.raises(HTTPError):
            parse_multipart(bad, b"XyZ")


def test_content_types_do_not_depend_on_the_machine():
    assert content_type("a/index.html") == "text/html; charset=utf-8"
    assert content_type("x.PNG") == "image/png" and content_type("s.css") == "text/css; charset=utf-8"
    assert content_type("app.js") == "text/javascript; charset=utf-8"
    assert content_type("noext") == "application/octet-stream"


async def test_quilt_routes_as_walrus_publisher_and_aggregator(tmp_path):
    files = {"contract-v2": os.urandom(5000), "logo-2024": os.urandom(700), "dir/page.html": b"<p>hi</p>"}
    with trio.fail_after(90):
        async with inprocess_network(4, 10, tmp_path) as cluster:
            async with running_gateway(cluster.net) as (gw, http, _):
                meta = json.dumps([{"identifier": "logo-2024", "tags": {"type": "logo", "format": "png"}}])
                form = [(name, (name, data)) for name, data in files.items()]
                r = await http.put("/v1/quilts", params={"epochs": 2}, files=form, data={"_metadata": meta})
                assert r.status_code == 200, r.text
                body = r.json()
                quilt_id = body["blobStoreResult"]["newlyCreated"]["blobObject"]["blobId"]
                stored = {s["identifier"]: s["quiltPatchId"] for s in body["storedQuiltBlobs"]}
                assert set(stored) == set(files)
                # The same quilt ID as the layout computed locally (Walrus's QuiltV1).
                local = q.encode_quilt([q.QuiltBlob(k, v, {"type": "logo", "format": "png"} if k == "logo-2024"
                                                    else {}) for k, v in files.items()], 10)
                from p2pwalrus.core import rs2

                assert blob_id_to_str(rs2.compute_blob_id(local.data, 10)) == quilt_id
                for name, data in files.items():
                    r = await http.get(f"/v1/blobs/by-quilt-id/{quilt_id}/{name}")
                    assert r.status_code == 200 and r.content == data, (name, r.text[:200])
                    assert r.headers["etag"] == f'"{stored[name]}"'
                    r = await http.get(f"/v1/blobs/by-quilt-patch-id/{stored[name]}")
                    assert r.status_code == 200 and r.content == data
                r = await http.get(f"/v1/blobs/by-quilt-patch-id/{stored['logo-2024']}",
                                   headers={"If-None-Match": f'"{stored["logo-2024"]}"'})
                assert r.status_code == 304
                r = await http.head(f"/v1/blobs/by-quilt-id/{quilt_id}/contract-v2")
                assert r.status_code == 200 and r.content == b"" and r.headers["content-length"] == "5000"
                assert (await http.get(f"/v1/blobs/by-quilt-id/{quilt_id}/nope")).status_code == 404
                assert (await http.get("/v1/blobs/by-quilt-patch-id/not-a-patch-id")).status_code == 400
                again = await http.put("/v1/quilts", params={"epochs": 2}, files=form, data={"_metadata": meta})
                assert "alreadyCertified" in again.json()["blobStoreResult"]
                # Walrus's rules for the form: no reserved names, no duplicates, files needed.
                for bad in ([("_x", ("_x", b"1"))], [("a", ("a", b"1")), ("a", ("a", b"2"))]):
                    assert (await http.put("/v1/quilts", files=bad)).status_code == 400
                assert (await http.put("/v1/quilts", content=b"raw")).status_code == 400
                api = (await http.get("/v1/api")).json()["paths"]
                assert {"/v1/quilts", "/v1/blobs/by-quilt-id/{quilt_id}/{identifier}",
                        "/v1/blobs/by-quilt-patch-id/{patch_id}", "/sites/{site_id}/{path}"} <= set(api)


async def test_a_published_site_is_served_and_republishing_stores_only_what_changed(tmp_path):
    site = tmp_path / "site"
    files = make_site(site)
    # Larger than one blob holds at 7 shards (983,010 bytes): stored in chunks with a file manifest.
    files["media/film.bin"] = random.Random(7).randbytes(2_500_000)
    (site / "media").mkdir()
    (site / "media/film.bin").write_bytes(files["media/film.bin"])
    with trio.fail_after(120):
        async with inprocess_network(4, 7, tmp_path / "net") as cluster:
            async with open_client(cluster.net) as client:
                first = await publish_directory(client, site, epochs=2)
            assert first.blobs_stored == 2 and first.quilts_stored >= 1 and first.quilts_reused == 0
            assert first.manifest.files["img/noise.png"].blob_id is not None
            assert first.manifest.files["img/red.png"].patch_id is not None
            sid = blob_id_to_str(first.site_id)
            async with running_gateway(cluster.net) as (gw, http, _):
                for path, data in files.items():
                    r = await http.get(f"/sites/{sid}/{path}")
                    assert r.status_code == 200 and r.content == data, path
                    assert r.headers["content-type"] == content_type(path)
                    assert r.headers["etag"] == f'"{first.manifest.files[path].content_id}"'
                r = await http.get(f"/sites/{sid}/")
                assert r.content == files["index.html"] and r.headers["content-type"] == "text/html; charset=utf-8"
                assert r.headers["content-security-policy"].startswith("sandbox allow-scripts")
                r = await http.get(f"/sites/{sid}/docs/guide/")
                assert r.content == files["docs/guide/index.html"]
                r = await http.get(f"/sites/{sid}/docs/guide")  # a directory: its links must resolve inside it
                assert r.status_code == 301 and r.headers["location"] == f"/sites/{sid}/docs/guide/"
                r = await http.get(f"/sites/{sid}")
                assert r.status_code == 301 and r.headers["location"] == f"/sites/{sid}/"
                for missing in ("nope.html", "docs/", "img/red.png/x"):
                    assert (await http.get(f"/sites/{sid}/{missing}")).status_code == 404, missing
                etag = f'"{first.manifest.files["img/red.png"].content_id}"'
                assert (await http.get(f"/sites/{sid}/img/red.png", headers={"If-None-Match": etag})).status_code == 304
                r = await http.get(f"/sites/{first.manifest.files['img/noise.png'].content_id}/")
                assert r.status_code == 404  # a blob that is not a site manifest

            # Change one page: one quilt and the manifest are uploaded, nothing else.
            (site / "docs/guide/more/page.html").write_bytes(b"<!doctype html><html><body><p>changed page</p></body></html>")
            before = store_requests(cluster)
            async with open_client(cluster.net) as client:
                second = await publish_directory(client, site, epochs=2)
                assert second.quilts_stored == 1 and second.blobs_stored == 0 and second.blobs_reused == 2
                assert second.quilts_reused == first.quilts_stored - 1
                unchanged = await publish_directory(client, site, epochs=2)
            uploads = store_requests(cluster) - before
            assert uploads <= 2 * len(cluster.alive())  # a quilt and a manifest: a stream per node each at most
            assert unchanged.site_id == second.site_id and unchanged.quilts_stored == unchanged.blobs_stored == 0
            assert second.site_id != first.site_id
            assert SiteManifest.from_bytes(SiteManifest(second.manifest.files).to_bytes()) == second.manifest


def color_pixels(png_bytes: bytes, rgb: tuple[int, int, int], tolerance: int = 40) -> int:
    width, height, channels, px = decode_png(png_bytes)
    count = 0
    for i in range(0, width * height * channels, channels):
        if all(abs(px[i + k] - rgb[k]) <= tolerance for k in range(3)):
            count += 1
    return count


@pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium installed (apt-get install chromium-headless-shell)")
async def test_a_published_site_opens_in_chromium_with_links_and_images_working(tmp_path):
    site = tmp_path / "site"
    make_site(site)
    with trio.fail_after(180):
        async with inprocess_network(4, 7, tmp_path / "net") as cluster:
            async with open_client(cluster.net) as client:
                published = await publish_directory(client, site, epochs=2)
            sid = blob_id_to_str(published.site_id)
            async with running_gateway(cluster.net) as (gw, http, base):
                home = f"{base}/sites/{sid}/"
                dom = (await chromium(tmp_path, "--dump-dom", home)).decode()
                # Every image loaded (the page's script wrote their natural widths in its title).
                assert "<title>loaded:red=200,noise=230</title>" in dom, dom[:500]
                shot = tmp_path / "home.png"
                await chromium(tmp_path, f"--screenshot={shot}", home)
                red = await trio.to_thread.run_sync(color_pixels, shot.read_bytes(), RED)
                assert red >= 0.9 * 200 * 200, red

                # Follow the link as the browser resolves it, and the links of that page.
                href = re.search(r'id="guide" href="([^"]+)"', dom).group(1)
                guide = httpx.URL(home).join(href)
                gdom = (await chromium(tmp_path, "--dump-dom", str(guide))).decode()
                assert "<title>loaded:blue=150,green=100</title>" in gdom, gdom[:500]
                shot = tmp_path / "guide.png"
                await chromium(tmp_path, f"--screenshot={shot}", str(guide))
                png_bytes = shot.read_bytes()
                blue, green = await trio.to_thread.run_sync(
                    lambda: (color_pixels(png_bytes, BLUE), color_pixels(png_bytes, GREEN)))
                assert blue >= 0.9 * 150 * 150 and green >= 0.9 * 100 * 100, (blue, green)
                back = guide.join(re.search(r'id="home" href="([^"]+)"', gdom).group(1))
                assert str(back) == home
                deeper = guide.join(re.search(r'id="page" href="([^"]+)"', gdom).group(1))
                assert "deep page" in (await chromium(tmp_path, "--dump-dom", str(deeper))).decode()
