"""The dashboard as a browser shows it (issue 18): a headless Chromium loads the gateway's
page from a real in-process testnet and takes a screenshot at load, before the page's script
has fetched anything (the gateway's request counter says it had not), so what it shows is the
first paint.

The screenshot must be a filled page: it is compared, by its pixels, with the same page whose
tables are empty (what the dashboard showed before it was rendered on the server). The DOM
as Chromium built it must show human times and the repair state in plain words.

Chromium comes from Debian (`chromium-headless-shell`, or `chromium`); .ci/run installs it
when it is missing. Without it this test skips, saying so.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import zlib
from pathlib import Path

import httpx
import pytest
import trio

from netlab.inprocess import inprocess_network
from p2pwalrus.gateway import GatewayConfig, serve_gateway
from p2pwalrus.gateway.dashboard import DASHBOARD_HTML

CHROMIUM_NAMES = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
CHROMIUM = os.environ.get("P2PWALRUS_CHROMIUM") or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
WIDTH, HEIGHT = 1100, 700
BACKGROUND = (0x0F, 0x17, 0x20)  # body background in DASHBOARD_HTML

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no headless Chromium installed (apt-get install chromium-headless-shell; .ci/run does it)",
)


# --- a PNG decoder, enough for Chromium's screenshots (8-bit RGB/RGBA, not interlaced) ---------

def decode_png(data: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, channels, pixels row by row without filter bytes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, f"unsupported PNG: {header}"
    channels = 3 if color == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels
    out = bytearray(stride * height)
    prev = bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if kind == 1:
            for i in range(channels, stride):
                line[i] = (line[i] + line[i - channels]) & 0xFF
        elif kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev))
        elif kind == 3:
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - channels] if i >= channels else 0
                b = prev[i]
                c = prev[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        out[y * stride:(y + 1) * stride] = line
        prev = line
    return width, height, channels, bytes(out)


def ink_rows(png: bytes) -> int:
    """How many pixel rows of the screenshot hold anything but the page background."""
    width, height, channels, px = decode_png(png)
    stride = width * channels
    rows = 0
    for y in range(height):
        row = px[y * stride:(y + 1) * stride]
        for x in range(0, stride, channels):
            if sum(abs(row[x + k] - BACKGROUND[k]) for k in range(3)) > 24:
                rows += 1
                break
    return rows


# --- Chromium --------------------------------------------------------------------------------

# The page's timers run on virtual time, and only 1 s of it: its script's first poll (after
# 2 s) never runs, however slowly the machine renders.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                  "--disable-dev-shm-usage", f"--window-size={WIDTH},{HEIGHT}", "--virtual-time-budget=1000"]


async def chromium(tmp_path: Path, *args: str) -> bytes:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.iterdir()))}"
    with trio.fail_after(60):
        done = await trio.run_process([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                                      capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done.stdout


async def screenshot(tmp_path: Path, url: str, name: str) -> bytes:
    shot = tmp_path / f"{name}.png"
    await chromium(tmp_path, f"--screenshot={shot}", url)
    return shot.read_bytes()


# --- the test --------------------------------------------------------------------------------

async def test_dashboard_first_paint_in_chromium_is_filled_with_human_times_and_plain_words(tmp_path):
    with trio.fail_after(150):
        async with inprocess_network(4, 7, tmp_path / "net") as cluster:
            async with trio.open_nursery() as nursery:
                gateway, urls = await nursery.start(serve_gateway, cluster.net, GatewayConfig(), "127.0.0.1:0")
                async with httpx.AsyncClient(base_url=urls[0], timeout=60.0) as http:
                    r = await http.put("/v1/blobs?epochs=2", content=os.urandom(3000))
                    assert r.status_code == 200, r.text
                    blob_id = r.json()["newlyCreated"]["blobObject"]["blobId"]
                url = urls[0].rstrip("/") + "/"
                filled = await screenshot(tmp_path, url, "dashboard")
                # The page's script polls dashboard/state every 2 s: it had not yet, so the
                # screenshot is what the server sent, painted.
                polls = gateway.metrics.registry.get_sample_value(
                    "p2pwalrus_gateway_requests_total", {"route": "/dashboard/state", "method": "GET", "status": "200"})
                assert not polls, f"the script fetched dashboard/state {polls} times before the screenshot"
                dom = (await chromium(tmp_path, "--dump-dom", url)).decode()
                nursery.cancel_scope.cancel()

    # The same page with its tables empty, as the dashboard first painted before it was
    # rendered on the server: the screenshot check must tell the two apart.
    empty_page = tmp_path / "empty.html"
    empty_page.write_text(re.sub(r"\{(net|epoch|live|cache|nodes|recent)\}", "", DASHBOARD_HTML))
    empty = await screenshot(tmp_path, empty_page.as_uri(), "empty")

    filled_rows, empty_rows = await trio.to_thread.run_sync(lambda: (ink_rows(filled), ink_rows(empty)))
    # 4 node rows and 1 blob row, each a line of text (over 9 px high) and a border, and the
    # header's values: at least 50 more rows of ink (here 231 against 106).
    assert filled_rows >= empty_rows + 50, (filled_rows, empty_rows)

    text = re.sub(r"<[^>]+>", " ", dom)
    for node in cluster.alive():
        assert node.peer_id[:16] in text
    assert blob_id in text
    assert re.search(r"\b(just now|\d+ (s|min|h|days) ago)\b", text), text
    assert re.search(r"ends in \d+(\.\d)? (s|min|h|days)", text), text
    assert "nothing to repair" in text or "repairing" in text, text
    assert ">stored<" in dom
    assert not re.search(r"repair_\w+=|challenges_\w+=", text)
    assert not re.search(r"\b1[0-9]{9}(\.[0-9]+)?\b", text), "a Unix timestamp on the page"
