"""Files larger than one blob: chunks and a manifest (core/manifest.py, client/chunked.py).

Small shard counts and small chunk sizes keep these quick: a few MB in several chunks.
"""

from __future__ import annotations

import hashlib
import itertools
import os

import pytest
import trio

from netlab.inprocess import inprocess_network
from p2pwalrus.client.chunked import (
    BytesSource,
    ChunkedStoreResult,
    blob_status,
    read_to,
    store_stream,
    stream_chunks,
)
from p2pwalrus.client.client import Progress, StoreResult, open_client
from p2pwalrus.core import rs2
from p2pwalrus.core.manifest import (
    HEADER_LEN,
    MAGIC,
    ChunkRef,
    FileManifest,
    ManifestError,
    max_chunks,
    needs_manifest,
    pack,
    plan_chunks,
    unpack,
)


def _manifest(sizes: list[int]) -> FileManifest:
    chunks = tuple(ChunkRef(hashlib.blake2b(bytes([i]), digest_size=32).digest(), s) for i, s in enumerate(sizes))
    return FileManifest(sum(sizes), bytes(range(32)), chunks)


# --- the pure manifest --------------------------------------------------------------------


def test_file_manifest_round_trips_and_refuses_what_is_not_one():
    m = _manifest([100, 100, 37])
    raw = m.to_bytes()
    assert raw.startswith(MAGIC) and len(raw) == HEADER_LEN + 44 + 3 * 40
    assert FileManifest.from_bytes(raw) == m
    assert unpack(raw)[:2] == (1, 1)
    for bad, why in [
        (raw[:-1], "exactly 3 chunks"),
        (raw + b"\0", "exactly 3 chunks"),
        (raw[:HEADER_LEN + 10], "truncated"),
        (b"plain bytes of a file", "no manifest magic"),
        (pack(2, 1, b"site"), "not a file manifest"),
        (MAGIC + bytes([1, 9]) + raw[HEADER_LEN:], "version 9 is not known"),
    ]:
        with pytest.raises(ManifestError, match=why):
            FileManifest.from_bytes(bad)
    # Sizes must add up to the file's: a manifest cannot make a reader stop short or run over.
    body = bytearray(raw)
    body[HEADER_LEN:HEADER_LEN + 8] = (238).to_bytes(8, "little")
    with pytest.raises(ManifestError, match="sum to 237"):
        FileManifest.from_bytes(bytes(body))


def test_chunks_for_range_names_only_the_chunks_a_range_overlaps():
    m = _manifest(plan_chunks(250, 100))
    assert [c.size for c in m.chunks] == [100, 100, 50]
    assert m.chunks_for_range(0, 249) == [(0, 0, 100), (1, 0, 100), (2, 0, 50)]
    assert m.chunks_for_range(99, 100) == [(0, 99, 100), (1, 0, 1)]
    assert m.chunks_for_range(120, 130) == [(1, 20, 31)]
    assert m.chunks_for_range(249, 249) == [(2, 49, 50)]
    with pytest.raises(ManifestError):
        m.chunks_for_range(10, 250)
    assert plan_chunks(0, 100) == [0] and plan_chunks(200, 100) == [100, 100]


def test_which_files_need_a_manifest():
    largest = rs2.EncodingConfig(10).max_blob_size
    assert not needs_manifest(largest, b"any bytes at all", 10)
    assert needs_manifest(largest + 1, b"any bytes at all", 10)
    assert needs_manifest(20, MAGIC + b"\x01\x01 and more", 10)  # would read back as a manifest
    # The room in one manifest blob: about 45,000 chunks at 10 shards (84 GB), more above.
    assert max_chunks(10) == (largest - HEADER_LEN - 44) // 40
    assert max_chunks(31) * rs2.EncodingConfig(31).max_blob_size > 5 * 10**12


# --- through real nodes -------------------------------------------------------------------


class Counting(Progress):
    def __init__(self):
        self.total = None
        self.seen = 0

    def start(self, description, total):  # a new bar: the manifest's own read came before
        self.total, self.seen = total, 0

    def advance(self, amount):
        self.seen += amount


def store_requests(cluster) -> int:
    return sum(n.counters["store_requests"] for n in cluster.alive())


async def test_a_file_of_several_chunks_reads_back_byte_exact_and_ranges_read_only_their_chunks(tmp_path):
    data = os.urandom(5 * 200_000 + 12_345)
    chunk = 200_000
    with trio.fail_after(120):
        async with inprocess_network(5, 10, tmp_path) as cluster:
            async with open_client(cluster.net) as client:
                progress = Counting()
                result = await store_stream(client, BytesSource(data), epochs=2, chunk_size=chunk,
                                            total=len(data), progress=progress)
                assert isinstance(result, ChunkedStoreResult)
                assert len(result.manifest.chunks) == 6 and result.chunks_uploaded == 6
                assert result.size == len(data)
                assert progress.total == len(data) and progress.seen == len(data)  # bytes of the file

                out = bytearray()

                async def write(piece):
                    out.extend(piece)

                progress = Counting()
                written, manifest = await read_to(client, result.blob_id, write, progress=progress)
                assert bytes(out) == data and written == len(data) and manifest == result.manifest
                assert progress.total == len(data) and progress.seen == len(data)

                # A range across a chunk boundary reads the two chunks it touches and no other.
                asked = []

                async def fetch(bid, prog):
                    asked.append(bid)
                    return await client.read(bid)

                out.clear()
                await stream_chunks(client, manifest, write, start=chunk - 10, end=chunk + 9, fetch=fetch)
                assert bytes(out) == data[chunk - 10:chunk + 10]
                assert asked == [manifest.chunks[0].blob_id, manifest.chunks[1].blob_id]

                # --raw gives the manifest itself.
                out.clear()
                await read_to(client, result.blob_id, write, raw=True)
                assert FileManifest.from_bytes(bytes(out)) == manifest

                status = await blob_status(client, result.blob_id)
                assert status["status"] == "certified"
                assert status["file"]["chunks"] == 6 and status["file"]["chunks_certified"] == 6
                assert status["file"]["min_shards_stored"] == 10 and status["file"]["not_certified"] == []
                plain = await client.store(b"just bytes", epochs=1)
                assert "file" not in await blob_status(client, plain.blob_id)

                # A file that fits one blob is one blob; one that looks like a manifest is wrapped.
                small = await store_stream(client, BytesSource(b"small file"), epochs=1)
                assert isinstance(small, StoreResult)
                tricky = MAGIC + b"\x01\x01" + os.urandom(100)
                wrapped = await store_stream(client, BytesSource(tricky), epochs=1)
                assert isinstance(wrapped, ChunkedStoreResult) and len(wrapped.manifest.chunks) == 1
                out.clear()
                await read_to(client, wrapped.blob_id, write)
                assert bytes(out) == tricky


async def test_extend_and_delete_of_a_chunked_file_reach_its_chunks(tmp_path):
    from p2pwalrus.client.chunked import delete, extend

    data = os.urandom(3 * 100_000)
    with trio.fail_after(120):
        async with inprocess_network(5, 10, tmp_path) as cluster:
            async with open_client(cluster.net) as client:
                result = await store_stream(client, BytesSource(data), epochs=2, chunk_size=100_000, deletable=True)
                chunk_ids = [c.blob_id for c in result.manifest.chunks]
                cert = await extend(client, result.blob_id, 6)
                assert cert.end_epoch == result.certificate.end_epoch + 4
                for bid in chunk_ids:
                    assert (await client.certified(bid)).end_epoch == cert.end_epoch
                assert await delete(client, result.blob_id) >= 1
                for bid in [result.blob_id, *chunk_ids]:
                    found, _ = await client.find_certificate(bid)
                    assert found is None


async def test_a_store_stopped_half_way_uploads_only_the_missing_chunks_when_run_again(tmp_path):
    data = os.urandom(8 * 150_000)
    chunk = 150_000
    n_chunks = 8
    with trio.fail_after(150):
        async with inprocess_network(5, 10, tmp_path) as cluster:
            async with open_client(cluster.net) as client:
                with trio.CancelScope() as stop:
                    def on_chunk(certified, started):
                        if certified == 3:
                            stop.cancel()

                    await store_stream(client, BytesSource(data), epochs=2, chunk_size=chunk, parallel=2,
                                       on_chunk=on_chunk)
                assert stop.cancelled_caught
                # Which chunks are certified now: their blob IDs, computed here, looked up.
                ids = [rs2.compute_blob_id(data[i:i + chunk], 10) for i in range(0, len(data), chunk)]
                certified = 0
                for bid in ids:
                    cert, _ = await client.find_certificate(bid)
                    certified += cert is not None
                assert 3 <= certified < n_chunks
                holders = sum(1 for p in client.shard_map.nodes if client.shard_map.shards_of(p))
                before = store_requests(cluster)
                again = await store_stream(client, BytesSource(data), epochs=2, chunk_size=chunk, parallel=2)
                assert again.chunks_skipped == certified and again.chunks_uploaded == n_chunks - certified
                # One STORE stream per holder per uploaded blob (chunks + manifest), nothing for the rest.
                assert store_requests(cluster) - before == (n_chunks - certified + 1) * holders
                out = bytearray()

                async def write(piece):
                    out.extend(piece)

                await read_to(client, again.blob_id, write)
                assert bytes(out) == data


async def test_a_chunked_file_reads_back_with_f_shards_holders_killed(tmp_path):
    n = 10
    f = (n - 1) // 3
    data = os.urandom(6 * 120_000 + 7)
    with trio.fail_after(150):
        async with inprocess_network(7, n, tmp_path) as cluster:
            async with open_client(cluster.net) as client:
                result = await store_stream(client, BytesSource(data), epochs=2, chunk_size=120_000)
                smap = client.shard_map
            # Kill nodes holding up to f shards in all (never node 0, the bootstrap).
            nodes = cluster.alive()
            counts = {i: len(smap.shards_of(nodes[i].peer_id)) for i in range(1, len(nodes))}
            # The set of holders with the most shards, at most f (f itself in all but rare maps).
            victims = max((list(c) for k in range(1, len(counts) + 1)
                           for c in itertools.combinations(counts, k) if sum(counts[i] for i in c) <= f),
                          key=lambda c: sum(counts[i] for i in c))
            lost = sum(counts[i] for i in victims)
            assert lost >= f - 1 and victims, counts
            for i in victims:
                await cluster.kill(i)
            async with open_client(cluster.net) as client:
                out = bytearray()

                async def write(piece):
                    out.extend(piece)

                written, manifest = await read_to(client, result.blob_id, write)
                assert bytes(out) == data and len(manifest.chunks) == 7


async def test_the_gateway_streams_a_large_put_and_serves_ranges_across_chunks(tmp_path):
    import httpx

    from p2pwalrus.core.blob_id import parse_blob_id
    from p2pwalrus.gateway import GatewayConfig, serve_gateway

    largest = rs2.EncodingConfig(10).max_blob_size
    data = os.urandom(2 * largest + 54_321)  # three chunks at 10 shards
    with trio.fail_after(150):
        async with inprocess_network(5, 10, tmp_path) as cluster, trio.open_nursery() as nursery:
            config = GatewayConfig()  # no body limit: the default
            gw, urls = await nursery.start(serve_gateway, cluster.net, config, "127.0.0.1:0")
            async with httpx.AsyncClient(base_url=urls[0], timeout=60.0) as http:
                async def pieces():  # no Content-Length: streamed as it comes
                    for i in range(0, len(data), 256 << 10):
                        yield data[i:i + (256 << 10)]

                r = await http.put("/v1/blobs", params={"epochs": 2}, content=pieces())
                assert r.status_code == 200, r.text
                created = r.json()["newlyCreated"]
                bid = created["blobObject"]["blobId"]
                assert created["file"]["size"] == len(data) and created["file"]["chunks"] == 3
                manifest = FileManifest.from_bytes(await gw.client.read(parse_blob_id(bid)))
                chunk_ids = [c.blob_id for c in manifest.chunks]

                r = await http.get(f"/v1/blobs/{bid}")
                assert r.status_code == 200 and r.content == data
                assert r.headers["content-length"] == str(len(data)) and r.headers["etag"] == f'"{bid}"'
                r = await http.head(f"/v1/blobs/{bid}")
                assert r.status_code == 200 and r.headers["content-length"] == str(len(data)) and r.content == b""

                # A range across the boundary of chunks 1 and 2 reads those two only (the
                # gateway notes every read from the network in its recent list).
                for cid in chunk_ids:
                    gw.cache.drop(cid)
                gw.recent.clear()
                a, b = 2 * largest - 100, 2 * largest + 99
                r = await http.get(f"/v1/blobs/{bid}", headers={"Range": f"bytes={a}-{b}"})
                assert r.status_code == 206 and r.content == data[a:b + 1]
                assert r.headers["content-range"] == f"bytes {a}-{b}/{len(data)}"
                read = [parse_blob_id(e["blob_id"]) for e in gw.recent if e["op"] == "read"]
                assert sorted(read) == sorted(chunk_ids[1:])
                r = await http.get(f"/v1/blobs/{bid}/byte-range", params={"start": 10, "length": 20})
                assert r.status_code == 200 and r.content == data[10:30]
                r = await http.get(f"/v1/blobs/{bid}", headers={"Range": f"bytes={len(data)}-"})
                assert r.status_code == 416

                # The same body again: every chunk and the manifest are already certified.
                r = await http.put("/v1/blobs", params={"epochs": 2}, content=data)
                assert r.status_code == 200 and r.json()["alreadyCertified"]["blobId"] == bid
                assert r.json()["alreadyCertified"]["file"]["chunksUploaded"] == 0
            nursery.cancel_scope.cancel()


# --- the CLI, as processes, against node processes -------------------------------------------


@pytest.mark.timeout(240)
def test_cli_store_killed_half_way_then_run_again_uploads_only_the_missing_chunks(tmp_path):
    """`p2pwalrus store` of a file of 12 chunks is SIGKILLed once its log says 3 chunks are
    certified; run again, it reports as uploaded only the chunks that were not certified,
    then `read` gives the file back byte-exact and `blob-status` summarises the chunks."""
    import json
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from netlab.lab import Lab

    repo = Path(__file__).resolve().parents[1]
    lab = Lab.create(tmp_path / "lab", 5, 10)
    env = dict(os.environ, PYTHONPATH=str(repo), P2PWALRUS_NETWORK=str(lab.network_path),
               P2PWALRUS_CLIENT_DIR=str(tmp_path / "client"))
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(12 * 100_000 - 1))
    cli = [sys.executable, "-m", "p2pwalrus"]
    try:
        lab.up()
        lab.wait_converged(45)
        proc = subprocess.Popen([*cli, "-v", "store", str(src), "--chunk-size", "100000", "--epochs", "2"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        certified = 0
        for line in proc.stderr:  # an event, not a sleep: the log line of each certified chunk
            if "p2pwalrus.chunked: chunk " in line and "certified:" in line:
                certified += 1
                if certified == 3:
                    proc.send_signal(signal.SIGKILL)
                    break
        proc.wait(timeout=30)
        proc.stderr.close()
        proc.stdout.close()
        assert certified == 3 and proc.returncode == -signal.SIGKILL

        res = subprocess.run([*cli, "store", str(src), "--chunk-size", "100000", "--epochs", "2", "--json"],
                             env=env, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        created = json.loads(res.stdout)["newlyCreated"]
        info = created["file"]
        assert info["chunks"] == 12 and info["size"] == src.stat().st_size
        # The three seen certified and perhaps a few more in flight when it was killed.
        assert 3 <= info["chunksAlreadyCertified"] < 12
        assert info["chunksUploaded"] == 12 - info["chunksAlreadyCertified"]
        bid = created["blobObject"]["blobId"]

        res = subprocess.run([*cli, "read", bid, "-o", str(tmp_path / "copy.bin")], env=env,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        assert (tmp_path / "copy.bin").read_bytes() == src.read_bytes()
        res = subprocess.run([*cli, "blob-status", bid], env=env, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        assert f"a file of {src.stat().st_size} bytes in 12 chunks: 12 certified" in res.stdout
    finally:
        lab.down(timeout=10)
