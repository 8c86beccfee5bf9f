"""Walrus's JSON shapes are made by the faces (p2pwalrus/gateway/walrus_json.py), from the client's plain results."""

from __future__ import annotations

from types import SimpleNamespace

from p2pwalrus.client.client import StoreResult
from p2pwalrus.core import rs2
from p2pwalrus.core.blob_id import blob_id_to_str
from p2pwalrus.gateway import walrus_json as wj


def _result(already: bool) -> StoreResult:
    cert = SimpleNamespace(n_shards=10, epoch=3, end_epoch=7, deletable=True, owner="12D3KooWowner")
    return StoreResult(blob_id=bytes(range(32)), size=1000, already_certified=already, certificate=cert,
                       shards_confirmed=10, nodes_failed={}, cost=42)


def test_cli_shape():
    bid = blob_id_to_str(bytes(range(32)))
    assert wj.blob_store_json(_result(True)) == {"alreadyCertified": {"blobId": bid, "endEpoch": 7}}
    assert wj.blob_store_json(_result(False)) == {"newlyCreated": {"blobObject": {
        "blobId": bid, "size": 1000, "encodingType": "RS2", "certifiedEpoch": 3, "deletable": True,
        "storage": {"startEpoch": 3, "endEpoch": 7, "storageSize": rs2.EncodingConfig(10).encoded_length(1000)},
    }, "cost": 42}}


def test_publisher_shape_and_chunked_files():
    body = wj.publisher_store_json(_result(False))["newlyCreated"]
    assert body["blobObject"]["id"].startswith("0x") and body["blobObject"]["id"] != body["blobObject"]["storage"]["id"]
    assert body["resourceOperation"]["registerFromScratch"]["epochsAhead"] == 4
    assert wj.publisher_store_json(_result(True))["alreadyCertified"]["event"] == {"txDigest": None, "eventSeq": None}
    manifest = SimpleNamespace(chunks=[1, 2, 3], content_hash=b"\x01" * 32)
    chunked = SimpleNamespace(manifest_store=_result(False), size=3000, manifest=manifest, chunks_uploaded=2,
                              chunks_skipped=1)
    for make in (wj.blob_store_json, wj.publisher_store_json):
        f = make(chunked)["newlyCreated"]["file"]
        assert f == {"size": 3000, "chunks": 3, "chunksUploaded": 2, "chunksAlreadyCertified": 1,
                     "contentHash": "01" * 32}
