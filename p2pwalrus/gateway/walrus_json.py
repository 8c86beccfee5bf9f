"""Walrus's JSON shapes, spoken by p2pwalrus's faces: the publisher's answer to a PUT (the
gateway), and the `--json` output of `p2pwalrus store` and `store-quilt` (the CLI).

The client returns plain results (client/client.py StoreResult, client/chunked.py
ChunkedStoreResult, client/quilts.py StoredQuilt); their Walrus dress is made here.
Light: the CLI imports this after a store without loading the gateway's server.
"""

from __future__ import annotations

import hashlib


def _is_chunked(result) -> bool:
    return hasattr(result, "manifest_store")  # client.chunked.ChunkedStoreResult, without importing it


def file_json(result) -> dict:
    """Our addition to Walrus's answer for a file stored as chunks and a manifest."""
    return {"size": result.size, "chunks": len(result.manifest.chunks), "chunksUploaded": result.chunks_uploaded,
            "chunksAlreadyCertified": result.chunks_skipped, "contentHash": result.manifest.content_hash.hex()}


def _with_file(body: dict, result) -> dict:
    next(iter(body.values()))["file"] = file_json(result)
    return body


def blob_store_json(result) -> dict:
    """Walrus's CLI answer to a store (`alreadyCertified` or `newlyCreated` with its
    `blobObject`), plus the FROST paid; a chunked file: its manifest's, plus "file"."""
    if _is_chunked(result):
        return _with_file(blob_store_json(result.manifest_store), result)
    from ..core import rs2
    from ..core.blob_id import blob_id_to_str

    cert = result.certificate
    bid = blob_id_to_str(result.blob_id)
    if result.already_certified:
        return {"alreadyCertified": {"blobId": bid, "endEpoch": cert.end_epoch}}
    encoded = rs2.EncodingConfig(cert.n_shards).encoded_length(result.size)
    return {"newlyCreated": {"blobObject": {
        "blobId": bid,
        "size": result.size,
        "encodingType": "RS2",
        "certifiedEpoch": cert.epoch,
        "deletable": cert.deletable,
        "storage": {"startEpoch": cert.epoch, "endEpoch": cert.end_epoch, "storageSize": encoded},
    }, "cost": result.cost}}


def object_id(blob_id: bytes, owner: str, label: bytes = b"") -> str:
    """Stand-in for a Sui object ID: blake2b-256(label || blob_id || owner's peer ID bytes)."""
    try:
        from libp2p.peer.id import ID

        owner_bytes = ID.from_base58(owner).to_bytes()
    except Exception:
        owner_bytes = owner.encode()
    return "0x" + hashlib.blake2b(label + blob_id + owner_bytes, digest_size=32).hexdigest()


def publisher_store_json(result) -> dict:
    """The body Walrus's publisher answers a PUT with, chain-only fields given honest
    stand-ins; a chunked file: its manifest's, plus "file"."""
    if _is_chunked(result):
        return _with_file(publisher_store_json(result.manifest_store), result)
    cert = result.certificate
    base = blob_store_json(result)
    if result.already_certified:
        return {"alreadyCertified": {"blobId": base["alreadyCertified"]["blobId"],
                                     "event": {"txDigest": None, "eventSeq": None},
                                     "endEpoch": cert.end_epoch}}
    obj = base["newlyCreated"]["blobObject"]
    encoded = obj["storage"]["storageSize"]
    return {"newlyCreated": {
        "blobObject": {
            "id": object_id(result.blob_id, cert.owner),
            "registeredEpoch": cert.epoch,
            "blobId": obj["blobId"],
            "size": obj["size"],
            "encodingType": obj["encodingType"],
            "certifiedEpoch": cert.epoch,
            "storage": {"id": object_id(result.blob_id, cert.owner, b"storage"),
                        "startEpoch": cert.epoch, "endEpoch": cert.end_epoch, "storageSize": encoded},
            "deletable": cert.deletable,
        },
        "resourceOperation": {"registerFromScratch": {"encodedLength": encoded,
                                                      "epochsAhead": cert.end_epoch - cert.epoch}},
        "cost": result.cost,  # FROST paid from the gateway's account (0 at price 0)
    }}


def quilt_patches_json(stored) -> list[dict]:
    """Walrus's `storedQuiltBlobs`: each file's identifier and patch ID."""
    return [{"identifier": p.identifier, "quiltPatchId": str(p.patch_id(stored.quilt_id))}
            for p in stored.index.patches]


def quilt_store_json(stored) -> dict:
    """Walrus's answer to a quilt store (PUT /v1/quilts, `store-quilt --json`)."""
    return {"blobStoreResult": publisher_store_json(stored.result), "storedQuiltBlobs": quilt_patches_json(stored)}
