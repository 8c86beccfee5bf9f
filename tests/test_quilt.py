"""Quilts in Walrus's QuiltV1 layout (p2pwalrus/core/quilt.py): pure layout, no network.

The vectors below were made by Walrus's own code: the quilt bytes by the TypeScript SDK's
`encodeQuilt` (@mysten/walrus 1.2.13) and the quilt's blob ID by walrus-core compiled to
WebAssembly (@mysten/walrus-wasm, `BlobEncoder.compute_metadata`), from the same
deterministic file contents as `stream` makes here. 28 random quilts (4 to 1000 shards,
tags, empty and multi-column files, non-ASCII identifiers) were checked that way when the
module was written; these four are pinned, with a patch ID from the SDK's
`encodeQuiltPatchId`.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pwalrus.core import quilt as q
from p2pwalrus.core import rs2
from p2pwalrus.core.blob_id import blob_id_to_str


def stream(seed: str, n: int) -> bytes:
    out, c = bytearray(), 0
    while len(out) < n:
        out += hashlib.blake2b(f"{seed}:{c}".encode(), digest_size=64).digest()
        c += 1
    return bytes(out[:n])


WALRUS_VECTORS = [
    (10, [("v1-0", 100, "b.txt", {}), ("v1-1", 1000, "a.png", {"type": "img", "aa": "1"})],
     "ec70f3be6ae50e3ab731990dcc288d0d6e331b1e5605d23562add81fd1744eaf",
     "1WG7Br_yahDTN8FzawQBxWU0X6lLWc9uoZukzxjR-ww", [("a.png", 1, 6), ("b.txt", 6, 7)]),
    (31, [("v2-0", 0, "empty", {}), ("v2-1", 5000, "index.html", {"content-type": "text/html"}),
          ("v2-2", 70000, "big.bin", {}), ("v2-3", 7, "über.txt", {})],
     "3c1ea18c894946a0ef4ccf41ff6fc495eb4281141cafda96b99679bc4574a8f7",
     "ftpCik8ZkuPGth0yxq_ruBQCm_2jwgdJ-iqSnHY-fW4",
     [("big.bin", 1, 17), ("empty", 17, 18), ("index.html", 18, 20), ("über.txt", 20, 21)]),
    (100, [("v3-0", 10240, "日本.md", {"b": "x", "aa": "y", "zz": ""}), ("v3-1", 1, "-dash", {}),
           ("v3-2", 3000, "x y z", {})],
     "2d1fe7f623432dbb11eef85e69c0dae3bb7aa4345c2be6bbd3595634a5d91d70",
     "-2e7kxvmzfqRLd2cCIcxAAWtWoqLQmjfVLiv5OQvl-c", [("-dash", 1, 2), ("x y z", 2, 14), ("日本.md", 14, 52)]),
    (1000, [("v4-0", 20000, "document.pdf", {}), ("v4-1", 123, "logo-2025", {"type": "logo", "format": "png"})],
     "69553a78e865fcd713c0239231688b36cc9bbff0c001051e62c4de6b9fb7df89",
     "_JtFtlOSW4f6nw4cnvmTTINZ4VLm4pLHZAxoaOCriyc", [("document.pdf", 1, 31), ("logo-2025", 31, 32)]),
]


@pytest.mark.parametrize("n_shards,files,quilt_sha256,blob_id,patches", WALRUS_VECTORS)
def test_same_files_give_walrus_quilt_bytes_and_quilt_id(n_shards, files, quilt_sha256, blob_id, patches):
    blobs = [q.QuiltBlob(ident, stream(seed, size), tags) for seed, size, ident, tags in files]
    enc = q.encode_quilt(blobs, n_shards)
    assert hashlib.sha256(enc.data).hexdigest() == quilt_sha256
    assert [(p.identifier, p.start_index, p.end_index) for p in enc.index.patches] == patches
    assert blob_id_to_str(rs2.compute_blob_id(enc.data, n_shards)) == blob_id
    # and every file reads back from the blob, with its tags
    for seed, size, ident, tags in files:
        got = q.patch_from_blob(enc.data, n_shards, ident)
        assert got.data == stream(seed, size) and dict(got.tags) == tags and got.identifier == ident


@pytest.mark.parametrize("sizes,columns,rows,index_columns,expected", [
    ([1000, 1, 1], 4, 7, 2, 72), ([1], 3, 2, 1, 4), ([115, 80, 4], 17, 9, 3, 6), ([20, 20, 20], 3, 5, 2, 4),
    ([5, 5, 5], 5, 1, 1, 6), ([25, 35, 45], 200, 1, 3, 10), ([10, 0, 0, 0], 17, 9, 2, 2),
    ([416, 253, 258, 384, 492, 303, 276, 464, 143, 251, 388, 263, 515, 433, 505, 385, 346, 69, 48, 495, 329,
      450, 494, 104, 539, 245, 109, 317, 60], 34, 16, 3, 32),
])
def test_symbol_size_search_matches_walrus_cases(sizes, columns, rows, index_columns, expected):
    assert q.compute_symbol_size(sizes, columns, rows, index_columns) == expected


def test_too_many_blobs_for_one_quilt_is_refused_naming_the_limit():
    with pytest.raises(q.QuiltError, match="at most 2"):
        q.compute_symbol_size([2, 1, 2, 1], 3, 3, 1)
    blobs = [q.QuiltBlob(f"f{i}", b"x") for i in range(q.max_patches(10) + 1)]
    with pytest.raises(q.QuiltError, match="at most 6"):
        q.encode_quilt(blobs, 10)


def test_each_patch_reads_from_its_own_columns_only():
    blobs = [q.QuiltBlob(f"file-{i:02d}", stream(f"c{i}", 100 * i + 1)) for i in range(20)]
    enc = q.encode_quilt(blobs, 31)
    whole = q.columns_of(enc.data, enc.geometry)
    for patch in enc.index.patches:
        touched: set[int] = set()

        def source(j: int) -> bytes:
            touched.add(j)
            return whole(j)

        got = q.decode_patch(source, enc.geometry, patch.start_index, patch.end_index)
        assert got.data == stream(f"c{int(patch.identifier[5:])}", 100 * int(patch.identifier[5:]) + 1)
        assert touched <= set(patch.columns)
    index_reads: set[int] = set()
    assert q.decode_index(lambda j: index_reads.add(j) or whole(j), enc.geometry) == enc.index
    assert index_reads == {0}


def test_patch_ids_are_walrus_quilt_patch_ids():
    # As the TS SDK's encodeQuiltPatchId writes it, for b.txt (columns 6..7) of the first vector's quilt.
    walrus = "1WG7Br_yahDTN8FzawQBxWU0X6lLWc9uoZukzxjR-wwBBgAHAA"
    from p2pwalrus.core.blob_id import parse_blob_id

    assert str(q.QuiltPatchId(parse_blob_id("1WG7Br_yahDTN8FzawQBxWU0X6lLWc9uoZukzxjR-ww"), 6, 7)) == walrus
    quilt_id = bytes(range(32))
    pid = q.QuiltPatchId(quilt_id, 3, 7)
    assert pid.to_bytes() == quilt_id + bytes([1, 3, 0, 7, 0])
    text = str(pid)
    assert len(text) == 50 and q.QuiltPatchId.parse(text) == pid
    for bad in ("", "x" * 50, blob_id_to_str(quilt_id), text[:-1] + "!", str(pid)[:-2]):
        with pytest.raises(q.InvalidPatchIdError):
            q.QuiltPatchId.parse(bad)
    with pytest.raises(q.InvalidPatchIdError, match="version 2"):
        q.QuiltPatchId.parse(q.base64.urlsafe_b64encode(quilt_id + bytes([2, 3, 0, 7, 0])).decode().rstrip("="))


@pytest.mark.parametrize("ident", ["", "trailing ", "tab\t", "nul\x00x", "del\x7f", "c1\x85"])
def test_identifiers_follow_walrus_rules(ident):
    with pytest.raises(q.QuiltError):
        q.QuiltBlob(ident, b"")


def test_duplicate_identifiers_are_refused():
    with pytest.raises(q.QuiltError, match="unique"):
        q.encode_quilt([q.QuiltBlob("a", b"1"), q.QuiltBlob("a", b"2")], 10)


def test_corrupt_indexes_and_patches_are_refused_at_parse():
    enc = q.encode_quilt([q.QuiltBlob("a", b"1" * 50), q.QuiltBlob("b", b"2" * 50, {"k": "v"})], 10)
    geo = enc.geometry
    good = q.columns_of(enc.data, geo)

    def with_column(j: int, col: bytes):
        return lambda i: col if i == j else good(i)

    col0 = bytearray(good(0))
    for mutate in (lambda c: c.__setitem__(0, 2),  # version
                   lambda c: c.__setitem__(slice(1, 5), (10 ** 6).to_bytes(4, "little")),  # index size
                   lambda c: c.__setitem__(5, 200)):  # patch count
        bad = bytearray(col0)
        mutate(bad)
        with pytest.raises(q.QuiltError):
            q.decode_index(with_column(0, bytes(bad)), geo)
    patch = enc.index.by_identifier("b")
    first = bytearray(good(patch.start_index))
    first[1:5] = (10 ** 6).to_bytes(4, "little")  # a length past its columns
    with pytest.raises(q.QuiltError):
        q.decode_patch(with_column(patch.start_index, bytes(first)), geo, patch.start_index, patch.end_index)
    with pytest.raises(q.QuiltPatchNotFoundError):
        q.patch_from_blob(enc.data, 10, "c")
    with pytest.raises(q.QuiltError, match="not a quilt"):
        q.QuiltGeometry.of_blob(10, 1001)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([4, 7, 10, 13, 31]),
       st.lists(st.tuples(st.text(min_size=1, max_size=12), st.binary(max_size=3000),
                          st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)),
                min_size=1, max_size=6, unique_by=lambda t: t[0]))
def test_any_valid_files_round_trip(n_shards, files):
    blobs = []
    for ident, data, tags in files:
        try:
            q.validate_identifier(ident)
        except q.QuiltError:
            continue
        blobs.append(q.QuiltBlob(ident, data, tags))
    if not blobs or len(blobs) > q.max_patches(n_shards):
        return
    enc = q.encode_quilt(blobs, n_shards)
    assert len(enc.data) == enc.geometry.blob_size
    for b in blobs:
        got = q.patch_from_blob(enc.data, n_shards, b.identifier)
        assert (got.identifier, got.data, got.tags) == (b.identifier, b.data, b.tags)
