"""Fuzzing every parser that takes a peer's or a client's bytes (hypothesis).

Each parser gets random input and mutations of a valid message (bytes flipped, cut,
spliced; JSON fields swapped for 1e400, NaN, 5,000-digit numbers, deep nesting, wrong
types, empty IDs). The bar: a parser returns a typed value or raises the project's own
refusal error (a ProtocolError, InvalidBlobIdError, EncodingError, or the gateway's
BadRange/Unsatisfiable); any other exception fails the test, and hypothesis shrinks it.

CI runs a few hundred inputs per parser; ``P2PWALRUS_FUZZ_EXAMPLES=10000`` (or
``bench/fuzz.py``) runs 10,000 or more on demand.
"""

from __future__ import annotations

import collections
import json
import os
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pwalrus.core import rs2
from p2pwalrus.core.blob_id import parse_blob_id
from p2pwalrus.core.certificates import (
    AvailabilityCertificate,
    StorageConfirmation,
    sign_confirmation,
    validate_certificate,
)
from p2pwalrus.core.keys import peer_id_from_public_key
from p2pwalrus.core.placement import compute_shard_map
from p2pwalrus.core.liveness import Beat, DownReport, SignedDownReport, sign_down_report
from p2pwalrus.core.records import NodeRecord, SignedNodeRecord, sign_record
from p2pwalrus.errors import EncodingError, InvalidBlobIdError, ProtocolError
from p2pwalrus.gateway.asgi import BadRange, Unsatisfiable, parse_range
from p2pwalrus.p2p import rpc
from p2pwalrus.p2p.framing import encode_uvarint, read_length
from p2pwalrus.core.rs2 import decode_proof_message, encode_proof_message

EXAMPLES = int(os.environ.get("P2PWALRUS_FUZZ_EXAMPLES", "300"))
ON_DEMAND = EXAMPLES > 1000
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not ON_DEMAND,
                suppress_health_check=list(HealthCheck))
calls: collections.Counter = collections.Counter()  # inputs each parser was given (bench/fuzz.py prints them)

NETWORK = "local"
N = 10
REFUSALS = (ProtocolError, EncodingError, InvalidBlobIdError)  # the project's own (ProtocolError: every wire parser)


# --- valid messages to mutate ----------------------------------------------------------------


def _keypair(seed: int):
    from libp2p.crypto.ed25519 import create_new_key_pair

    return create_new_key_pair(bytes([seed]) * 32)


def _peer_id(kp) -> str:
    return peer_id_from_public_key(kp.public_key.to_bytes())


KEYS = [_keypair(i + 1) for i in range(5)]
PEERS = [_peer_id(k) for k in KEYS]
NOW = time.time()

RECORD = sign_record(KEYS[0], NodeRecord(network=NETWORK, peer_id=PEERS[0], addrs=("/ip4/127.0.0.1/tcp/4001",),
                                         capacity=1 << 30, version="0.1.0", issued_at=NOW, expires_at=NOW + 600,
                                         seq=3)).to_bytes()
ENC = rs2.encode_blob(b"fuzz me" * 100, N)
META = ENC.metadata.to_bytes()
CONF = sign_confirmation(KEYS[0], PEERS[0], NETWORK, ENC.blob_id, 0, 2, [1, 2]).to_json()
SMAP = compute_shard_map(PEERS, N)  # the validator's own view
CERT = AvailabilityCertificate(
    network=NETWORK, blob_id=ENC.blob_id, n_shards=N, epoch=0, end_epoch=2, members=tuple(PEERS),
    confirmations=tuple(StorageConfirmation.from_json(sign_confirmation(
        k, p, NETWORK, ENC.blob_id, 0, 2, SMAP.shards_of(p), deletable=True, owner=PEERS[1]).to_json())
        for k, p in zip(KEYS, PEERS) if SMAP.shards_of(p)),
    deletable=True, owner=PEERS[1],
).to_bytes()
_symbols = rs2.recovery_symbols(rs2.PRIMARY, 0, ENC.primary_sliver(0), [1, 2, 3], ENC.metadata.config,
                                ENC.metadata.symbol_size)
PROOF = encode_proof_message(ENC.blob_id, ENC.metadata, rs2.InconsistencyProof(rs2.SECONDARY, 1, tuple(_symbols)))
REPORT = sign_down_report(KEYS[0], DownReport(NETWORK, PEERS[0], PEERS[1], 7, NOW)).to_bytes()
BEAT = Beat(5, bytes(16), bytes(range(16))).to_frame()
HEADER = json.dumps({"blob_id": ENC.blob_id.hex(), "epoch": 0, "end_epoch": 2, "pairs": [0, 1],
                     "deletable": False, "owner": PEERS[0], "pair": 1, "kind": "primary", "axis": "primary",
                     "targets": [1, 2]}).encode()


# --- strategies ---------------------------------------------------------------------------------

# Raw JSON text that breaks naive parsers: out-of-range floats, huge ints, deep nesting, bad escapes.
NASTY_JSON = st.sampled_from([
    "1e400", "-1e400", "NaN", "Infinity", "-0", "1" * 5000, "-" + "9" * 30, "1.5", "true", "null", '""',
    '"\\ud800"', '"\\u0000"', "[" * 3000 + "]" * 3000, '{"a":' * 2000 + "1" + "}" * 2000, "[]", "{}",
    '"' + "x" * 70 + '"', '"12D3KooW"', '"٣"', "0", "4294967296", "18446744073709551616",
])

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated_bytes(draw, valid: bytes) -> bytes:
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "extend", "splice", "zero", "random"]))
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        elif op == "cut":
            data = data[:draw(st.integers(0, len(data)))]
        elif op == "extend":
            data += draw(st.binary(max_size=64))
        elif op == "splice" and data:
            i = draw(st.integers(0, len(data)))
            data[i:i + draw(st.integers(0, 8))] = draw(st.binary(max_size=16))
        elif op == "zero" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i:i + 4] = b"\x00\x00\x00\x00"[: len(data) - i]
        elif op == "random":
            return draw(st.binary(max_size=len(valid) + 64))
    return bytes(data)


@st.composite
def mutated_json(draw, valid: bytes) -> bytes:
    """A valid JSON object with fields replaced (nasty raw text or any JSON value), dropped or added."""
    obj = json.loads(valid)
    placeholders = {}
    for _ in range(draw(st.integers(1, 3))):
        keys = sorted(obj) if isinstance(obj, dict) else []
        op = draw(st.sampled_from(["raw", "value", "drop", "add", "nested"]))
        if op in ("raw", "value", "nested") and keys:
            key = draw(st.sampled_from(keys))
            if op == "raw":
                mark = f"@@{len(placeholders)}@@"
                placeholders[mark] = draw(NASTY_JSON)
                obj[key] = mark
            elif op == "value":
                obj[key] = draw(JSON_VALUES)
            elif isinstance(obj[key], list) and obj[key]:
                i = draw(st.integers(0, len(obj[key]) - 1))
                obj[key][i] = draw(JSON_VALUES)
        elif op == "drop" and keys:
            del obj[draw(st.sampled_from(keys))]
        elif op == "add":
            obj[draw(st.text(max_size=8))] = draw(JSON_VALUES)
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    for mark, raw in placeholders.items():
        text = text.replace(f'"{mark}"', raw)
    return text.encode()


def _either(valid: bytes, *, json_body: bool = True):
    options = [st.binary(max_size=256), mutated_bytes(valid)]
    if json_body:
        options.append(mutated_json(valid))
    return st.one_of(*options)


def _refused_or_typed(fn, *args, refusals=REFUSALS, **kwargs):
    try:
        return fn(*args, **kwargs)
    except refusals:
        return None


# --- the parsers --------------------------------------------------------------------------------


@FUZZ
@given(st.one_of(st.binary(max_size=512), mutated_bytes(RECORD),
                 mutated_json(RECORD[65:]).map(lambda body: RECORD[:65] + body)))
def test_fuzz_node_records(data):
    calls["node record"] += 1
    rec = _refused_or_typed(SignedNodeRecord.from_bytes, data, network=NETWORK, now=NOW)
    assert rec is None or isinstance(rec, SignedNodeRecord)


@FUZZ
@given(st.one_of(JSON_VALUES, mutated_json(json.dumps(CONF).encode()).map(
    lambda b: _refused_or_typed(json.loads, b, refusals=(ValueError, RecursionError)))))
def test_fuzz_confirmations(obj):
    calls["confirmation"] += 1
    conf = _refused_or_typed(StorageConfirmation.from_json, obj)
    assert conf is None or (isinstance(conf, StorageConfirmation) and all(type(s) is int for s in conf.shards))


@FUZZ
@given(_either(CERT))
def test_fuzz_certificates(data):
    calls["certificate"] += 1
    cert = _refused_or_typed(AvailabilityCertificate.from_bytes, data)
    if cert is None:
        return
    assert isinstance(cert, AvailabilityCertificate) and type(cert.epoch) is int and type(cert.end_epoch) is int
    _refused_or_typed(validate_certificate, cert, network=NETWORK, n_shards=N, views=[SMAP], current_epoch=1,
                      max_epochs_ahead=10)


@FUZZ
@given(st.one_of(st.binary(max_size=512), mutated_bytes(PROOF)))
def test_fuzz_inconsistency_proofs(data):
    calls["inconsistency proof"] += 1
    decoded = _refused_or_typed(decode_proof_message, data, N)
    if decoded is None:
        return
    blob_id, meta, proof = decoded
    assert isinstance(proof, rs2.InconsistencyProof) and isinstance(meta, rs2.BlobMetadata)
    assert _refused_or_typed(rs2.verify_inconsistency_proof, meta, proof) in (True, False, None)


@FUZZ
@given(st.one_of(st.binary(max_size=1024), mutated_bytes(META)))
def test_fuzz_metadata(data):
    calls["metadata"] += 1
    meta = _refused_or_typed(rs2.BlobMetadata.from_bytes, data, max_shards=N)
    if meta is not None:
        assert isinstance(meta, rs2.BlobMetadata) and len(meta.blob_id()) == 32


def _read_length_sync(data: bytes, max_size: int) -> int:
    """framing.read_length over a stream that has ``data`` (its coroutine never suspends)."""

    class Stream:
        def __init__(self):
            self.left = data

        async def read(self, n):
            out, self.left = self.left[:1], self.left[1:]
            return out

    coro = read_length(Stream(), max_size)
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("read_length suspended")


@FUZZ
@given(st.one_of(st.binary(max_size=64), mutated_bytes(HEADER), mutated_json(HEADER)))
def test_fuzz_stream_headers(data):
    calls["stream header"] += 1
    obj = _refused_or_typed(rpc.parse_json_header, data)
    if obj is not None:
        assert isinstance(obj, dict)
        for name, kind in (("epoch", int), ("end_epoch", int), ("pairs", list), ("kind", str), ("owner", str),
                           ("deletable", bool), ("targets", list), ("pair", int)):
            value = _refused_or_typed(rpc.field, obj, name, kind, required=False)
            assert value is None or (isinstance(value, kind) and (kind is not int or type(value) is int))
        raw = _refused_or_typed(rpc.blob_id_field, obj)
        assert raw is None or len(raw) == 32
    # The frame's length prefix, from the same bytes.
    n = _refused_or_typed(_read_length_sync, data, rpc.MAX_HEADER)
    assert n is None or 0 <= n <= rpc.MAX_HEADER


@FUZZ
@given(st.integers(0, 1 << 70), st.binary(max_size=3))
def test_fuzz_frame_lengths(length, tail):
    calls["frame length"] += 1
    n = _refused_or_typed(_read_length_sync, encode_uvarint(length) + tail, 64 << 20)
    assert n is None or n == length <= 64 << 20


RANGE_TEXT = st.one_of(
    st.text(max_size=40),
    st.builds(lambda a, b, u: f"{u}={a}-{b}", st.text(st.characters(categories=["Nd"]), max_size=6),
              st.text(st.characters(categories=["Nd"]), max_size=6), st.sampled_from(["bytes", "BYTES", "items"])),
    st.builds(lambda a, b: f"bytes={a}-{b}", st.sampled_from(["", "0", "5", "9" * 5000, "9" * 100, "007", " 1"]),
              st.sampled_from(["", "0", "3", "9" * 5000, "9" * 30, "1,2-3", "-1"])),
)


@FUZZ
@given(RANGE_TEXT, st.integers(0, 1 << 40))
def test_fuzz_http_range_headers(header, size):
    calls["HTTP Range"] += 1
    rng = _refused_or_typed(parse_range, header, size, refusals=(BadRange, Unsatisfiable))
    if rng is not None:
        start, end = rng
        assert 0 <= start <= end < size


@FUZZ
@given(st.one_of(st.binary(max_size=64), mutated_bytes(BEAT)))
def test_fuzz_heartbeat_frames(data):
    calls["heartbeat frame"] += 1
    beat = _refused_or_typed(Beat.from_frame, data)
    assert beat is None or isinstance(beat, Beat)


@FUZZ
@given(st.one_of(st.binary(max_size=600), mutated_bytes(REPORT),
                 mutated_json(REPORT[65:]).map(lambda body: REPORT[:65] + body)))
def test_fuzz_down_reports(data):
    calls["down report"] += 1
    report = _refused_or_typed(SignedDownReport.from_bytes, data, network=NETWORK, now=NOW, max_age=60)
    assert report is None or isinstance(report, SignedDownReport)


@FUZZ
@given(st.one_of(st.text(max_size=80), st.sampled_from(["u" + "A" * 43, "z" * 5000, "m", "", "٣" * 43])))
def test_fuzz_blob_ids(text):
    calls["blob ID"] += 1
    raw = _refused_or_typed(parse_blob_id, text)
    assert raw is None or len(raw) == 32
