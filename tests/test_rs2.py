import os
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from p2pwalrus.core import rs2
from p2pwalrus.core.blob_id import blob_id_to_str, parse_blob_id
from p2pwalrus.core.testing import make_inconsistent_blob
from p2pwalrus.errors import (
    BlobTooLargeError,
    DecodingError,
    EncodingError,
    InconsistentBlobError,
    InvalidBlobIdError,
    VerificationError,
)

from .rs2_reference import reference_encode

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_walrus_check_value_some_other_string_at_1000_shards():
    blob_id = rs2.compute_blob_id(b"some other string", 1000)
    assert blob_id_to_str(blob_id) == "M4hsZGQ1oCktdzegB6HnI6Mi28S2nqOPHxK-W7_4BUk"


@pytest.mark.parametrize(
    "n,size",
    [(4, 0), (4, 1), (4, 5), (5, 17), (7, 64), (10, 1), (10, 999), (13, 4096), (31, 12345), (100, 70001), (37, 3)],
)
def test_fast_encoder_matches_literal_reference(n, size):
    data = random.Random(n * 7919 + size).randbytes(size)
    ref_id, E = reference_encode(data, n)
    enc = rs2.encode_blob(data, n)
    assert enc.blob_id == ref_id
    assert rs2.compute_blob_id(data, n) == ref_id
    cfg = rs2.EncodingConfig(n)
    for i in range(n):
        assert enc.primary_sliver(i) == b"".join(E[i][: cfg.n_secondary])
        col = n - 1 - i
        assert enc.secondary_sliver(i) == b"".join(E[r][col] for r in range(cfg.n_primary))


@given(n=st.integers(4, 64), size=st.integers(0, 3000), seed=st.integers(0, 2**32))
@SETTINGS
def test_fast_encoder_matches_reference_on_random_cases(n, size, seed):
    data = random.Random(seed).randbytes(size)
    assert rs2.compute_blob_id(data, n) == reference_encode(data, n)[0]


def test_metadata_roundtrip_and_blob_id_check():
    enc = rs2.encode_blob(os.urandom(1000), 10)
    meta = rs2.BlobMetadata.from_bytes(enc.metadata.to_bytes())
    assert meta == enc.metadata
    meta.verify_blob_id(enc.blob_id)
    with pytest.raises(VerificationError):
        meta.verify_blob_id(bytes(32))


def test_shard_count_out_of_range_is_refused():
    for n in (0, 1, 3, 65536):
        with pytest.raises(EncodingError, match="shard count"):
            rs2.EncodingConfig(n)


def test_blob_over_the_limit_names_the_limit():
    cfg = rs2.EncodingConfig(4)
    assert cfg.max_blob_size == 2 * 3 * 65534
    with pytest.raises(BlobTooLargeError, match=str(cfg.max_blob_size)):
        rs2.compute_blob_id(bytes(cfg.max_blob_size + 1), 4)
    rs2.compute_blob_id(bytes(cfg.max_blob_size), 4)  # the limit itself is fine


def _sizes_for(n):
    return st.integers(0, min(rs2.EncodingConfig(n).max_blob_size, 3 << 20))


@st.composite
def blob_cases(draw, max_n=200):
    n = draw(st.sampled_from([4, 5, 7, 10, 13, 31, 64, 100, max_n]))
    size = draw(st.one_of(st.integers(0, 300), _sizes_for(n)))
    seed = draw(st.integers(0, 2**32))
    return n, random.Random(seed).randbytes(size), random.Random(seed + 1)


@given(case=blob_cases())
@SETTINGS
def test_decode_from_any_n_minus_2f_primary_slivers_is_exact(case):
    n, data, rnd = case
    enc = rs2.encode_blob(data, n)
    cfg = enc.metadata.config
    rows = rnd.sample(range(n), cfg.n_primary)
    slivers = {i: enc.primary_sliver(i) for i in rows}
    for i, s in slivers.items():
        rs2.verify_primary_sliver(enc.metadata, i, s)
    assert rs2.decode_primary(enc.metadata, slivers) == data
    assert rs2.decode_primary(enc.metadata, slivers, strict=True) == data


@given(case=blob_cases(max_n=100))
@SETTINGS
def test_decode_from_any_n_minus_f_secondary_slivers_is_exact(case):
    n, data, rnd = case
    enc = rs2.encode_blob(data, n)
    cfg = enc.metadata.config
    cols = rnd.sample(range(n), cfg.n_secondary)
    slivers = {j: enc.secondary_column(j).tobytes() for j in cols}
    for j, s in slivers.items():
        rs2.verify_secondary_sliver(enc.metadata, n - 1 - j, s)
    assert rs2.decode_secondary(enc.metadata, slivers) == data


@given(case=blob_cases())
@SETTINGS
def test_joining_the_systematic_slivers_equals_the_full_decode(case):
    n, data, rnd = case
    enc = rs2.encode_blob(data, n)
    cfg = enc.metadata.config
    r = cfg.n_primary
    systematic = {i: enc.primary_sliver(i) for i in range(r)}
    # The full decode: from the R highest rows, which include all 2f recovery rows.
    others = {i: enc.primary_sliver(i) for i in range(n - r, n)}
    full = rs2.decode_primary(enc.metadata, others)
    joined = rs2.join_systematic(enc.metadata, systematic)
    assert joined == full == data
    # decode_primary takes the fast path whatever else it is given, strict or not.
    extra = {**systematic, **{i: enc.primary_sliver(i) for i in rnd.sample(range(r, n), rnd.randint(0, n - r))}}
    assert rs2.decode_primary(enc.metadata, extra) == data
    assert rs2.decode_primary(enc.metadata, systematic, strict=True) == data
    # Systematic rows but one, plus one recovery row: only that row is decoded.
    gone, spare = rnd.randrange(r), rnd.randrange(r, n)
    mixed = {i: v for i, v in systematic.items() if i != gone} | {spare: enc.primary_sliver(spare)}
    assert rs2.decode_primary(enc.metadata, mixed) == data


def test_joining_needs_every_systematic_sliver_of_the_right_size():
    enc = rs2.encode_blob(os.urandom(5000), 10)
    r = enc.metadata.config.n_primary
    slivers = {i: enc.primary_sliver(i) for i in range(r)}
    with pytest.raises(DecodingError, match=r"\[2\]"):
        rs2.join_systematic(enc.metadata, {i: v for i, v in slivers.items() if i != 2})
    with pytest.raises(VerificationError):
        rs2.join_systematic(enc.metadata, {**slivers, 1: slivers[1][:-2]})


def test_strict_read_of_the_systematic_slivers_still_catches_an_inconsistent_blob():
    enc = make_inconsistent_blob(os.urandom(4000), 10, row=0, column=1)
    r = enc.metadata.config.n_primary
    slivers = {i: enc.primary_sliver(i) for i in range(r)}
    assert rs2.decode_primary(enc.metadata, slivers)  # non-strict: the systematic rows verify, as before
    with pytest.raises(InconsistentBlobError):
        rs2.decode_primary(enc.metadata, slivers, strict=True)


def test_too_few_slivers_is_a_clear_error():
    enc = rs2.encode_blob(b"x" * 100, 10)
    with pytest.raises(DecodingError, match="need 4"):
        rs2.decode_primary(enc.metadata, {0: enc.primary_sliver(0)})


@given(case=blob_cases(max_n=100), data=st.data())
@SETTINGS
def test_recovery_of_any_sliver_from_any_sufficient_symbols_is_exact(case, data):
    n, blob, rnd = case
    enc = rs2.encode_blob(blob, n)
    meta, cfg, s = enc.metadata, enc.metadata.config, enc.metadata.symbol_size
    # A secondary sliver (column j) from n-2f primary slivers' symbols.
    j = data.draw(st.integers(0, n - 1))
    rows = rnd.sample(range(n), cfg.n_primary)
    syms = [rs2.recovery_symbols(rs2.PRIMARY, i, enc.primary_sliver(i), [j], cfg, s)[0] for i in rows]
    result = rs2.recover_sliver(meta, rs2.SECONDARY, j, syms)
    assert result.sliver == enc.secondary_column(j).tobytes() and not result.rejected
    # A primary sliver (row i) from n-f secondary slivers' symbols.
    i = data.draw(st.integers(0, n - 1))
    cols = rnd.sample(range(n), cfg.n_secondary)
    syms = [rs2.recovery_symbols(rs2.SECONDARY, c, enc.secondary_column(c).tobytes(), [i], cfg, s)[0] for c in cols]
    assert rs2.recover_sliver(meta, rs2.PRIMARY, i, syms).sliver == enc.primary_sliver(i)


@given(case=blob_cases(max_n=64), data=st.data())
@SETTINGS
def test_any_flipped_byte_in_sliver_symbol_or_proof_is_caught(case, data):
    n, blob, rnd = case
    enc = rs2.encode_blob(blob, n)
    meta, cfg, s = enc.metadata, enc.metadata.config, enc.metadata.symbol_size
    i = data.draw(st.integers(0, n - 1))
    # Sliver.
    sliver = bytearray(enc.primary_sliver(i))
    sliver[data.draw(st.integers(0, len(sliver) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(VerificationError):
        rs2.verify_primary_sliver(meta, i, bytes(sliver))
    sec = bytearray(enc.secondary_sliver(i))
    sec[data.draw(st.integers(0, len(sec) - 1))] ^= 0x80
    with pytest.raises(VerificationError):
        rs2.verify_secondary_sliver(meta, i, bytes(sec))
    # Symbol data and proof.
    sym = rs2.recovery_symbols(rs2.PRIMARY, i, enc.primary_sliver(i), [0], cfg, s)[0]
    assert rs2.verify_recovery_symbol(meta, sym)
    bad_data = bytearray(sym.data)
    bad_data[data.draw(st.integers(0, len(bad_data) - 1))] ^= 4
    assert not rs2.verify_recovery_symbol(meta, rs2.RecoverySymbol(sym.axis, i, 0, bytes(bad_data), sym.proof))
    if sym.proof:
        k = data.draw(st.integers(0, len(sym.proof) - 1))
        node = bytearray(sym.proof[k])
        node[data.draw(st.integers(0, 31))] ^= 2
        proof = sym.proof[:k] + (bytes(node),) + sym.proof[k + 1:]
        assert not rs2.verify_recovery_symbol(meta, rs2.RecoverySymbol(sym.axis, i, 0, sym.data, proof))


def test_corrupt_symbols_are_named_and_skipped_during_recovery():
    n = 10
    enc = rs2.encode_blob(os.urandom(5000), n)
    meta, cfg, s = enc.metadata, enc.metadata.config, enc.metadata.symbol_size
    syms = [rs2.recovery_symbols(rs2.PRIMARY, i, enc.primary_sliver(i), [3], cfg, s)[0] for i in range(n)]
    bad = rs2.RecoverySymbol(rs2.PRIMARY, 0, 3, bytes(len(syms[0].data)), syms[0].proof)
    result = rs2.recover_sliver(meta, rs2.SECONDARY, 3, [bad] + syms[1:])
    assert result.sliver == enc.secondary_column(3).tobytes()
    assert result.rejected == ((0, "Merkle proof does not verify"),)
    with pytest.raises(DecodingError, match="valid recovery symbols"):
        rs2.recover_sliver(meta, rs2.SECONDARY, 3, [bad] + syms[1:cfg.n_primary])


def test_recovery_symbol_wire_roundtrip():
    enc = rs2.encode_blob(os.urandom(3000), 13)
    cfg, s = enc.metadata.config, enc.metadata.symbol_size
    syms = rs2.recovery_symbols(rs2.SECONDARY, 5, enc.secondary_column(5).tobytes(), [0, 7, 12], cfg, s)
    wire = b"".join(x.to_bytes() for x in syms)
    off, back = 0, []
    while off < len(wire):
        sym, off = rs2.RecoverySymbol.from_bytes(wire, off)
        back.append(sym)
    assert back == syms


@pytest.mark.parametrize("n", [7, 10, 31])
def test_inconsistent_blob_is_detected_with_a_checkable_proof(n):
    data = os.urandom(4000)
    bad_row = 1
    enc = make_inconsistent_blob(data, n, row=bad_row, column=2)
    meta, cfg, s = enc.metadata, enc.metadata.config, enc.metadata.symbol_size
    for i in range(n):  # every sliver verifies on its own
        rs2.verify_primary_sliver(meta, i, enc.primary_sliver(i))
        rs2.verify_secondary_sliver(meta, i, enc.secondary_sliver(i))
    rows = [bad_row] + [i for i in range(n) if i != bad_row][: cfg.n_primary - 1]
    syms = [rs2.recovery_symbols(rs2.PRIMARY, i, enc.primary_sliver(i), [2], cfg, s)[0] for i in rows]
    with pytest.raises(InconsistentBlobError) as info:
        rs2.recover_sliver(meta, rs2.SECONDARY, 2, syms)
    proof = rs2.InconsistencyProof.from_bytes(info.value.proof.to_bytes())
    assert rs2.verify_inconsistency_proof(meta, proof)
    # The same proof says nothing against a consistent blob.
    good = rs2.encode_blob(data, n)
    assert not rs2.verify_inconsistency_proof(good.metadata, proof)


def test_inconsistent_blob_fails_the_read_consistency_check():
    n = 10
    enc = make_inconsistent_blob(os.urandom(4000), n, row=0, column=1)
    cfg = enc.metadata.config
    rows = list(range(1, cfg.n_primary + 1))  # row 0, the tampered one, must be decoded
    slivers = {i: enc.primary_sliver(i) for i in rows}
    with pytest.raises(InconsistentBlobError):
        rs2.decode_primary(enc.metadata, slivers)


def test_pair_shard_mapping_is_a_rotation_by_blob_id():
    blob_id = bytes(31) + b"\x07"
    assert [rs2.shard_for_pair(p, blob_id, 5) for p in range(5)] == [2, 3, 4, 0, 1]
    for p in range(5):
        assert rs2.pair_for_shard(rs2.shard_for_pair(p, blob_id, 5), blob_id, 5) == p


def test_blob_id_text_forms():
    raw = rs2.compute_blob_id(b"some other string", 10)
    text = blob_id_to_str(raw)
    assert len(text) == 43 and parse_blob_id(text) == raw
    assert parse_blob_id("u" + text) == raw
    from multiformats import multibase

    assert parse_blob_id(multibase.encode(raw, "base58btc")) == raw
    for bad in ("", "abc", text[:-1] + "!", "u" + text[:-2]):
        with pytest.raises(InvalidBlobIdError):
            parse_blob_id(bad)


def test_a_padded_buffer_encodes_in_place_to_the_same_blob():
    data = os.urandom(12_345)
    buf = rs2.blob_buffer(len(data), 31)
    buf[: len(data)] = np.frombuffer(data, np.uint8)
    enc = rs2.encode_blob(buf, 31, length=len(data))
    assert enc.blob_id == rs2.compute_blob_id(data, 31) == rs2.compute_blob_id(buf, 31, length=len(data))
    assert np.shares_memory(enc.source, buf)  # no copy of the blob
    buf[-1] = 1
    with pytest.raises(EncodingError, match="padding"):
        rs2.encode_blob(buf, 31, length=len(data))


def _per_sliver_verdict(meta, axis, index, sliver):
    verify = rs2.verify_primary_sliver if axis == rs2.PRIMARY else rs2.verify_secondary_sliver
    try:
        verify(meta, index, sliver)
    except VerificationError as exc:
        return str(exc)
    return None


@given(case=blob_cases(max_n=64), data=st.data())
@SETTINGS
def test_batched_sliver_verification_accepts_exactly_what_per_sliver_verification_accepts(case, data):
    n, blob, rnd = case
    enc = rs2.encode_blob(blob, n)
    other = rs2.encode_blob(blob + b"x", n)  # slivers of another blob, same sizes mostly
    meta = enc.metadata
    stripe = data.draw(st.sampled_from([1, 4096, 8 << 20]))  # 1: one sliver per codec call
    for axis in (rs2.PRIMARY, rs2.SECONDARY):
        own = enc.primary_sliver if axis == rs2.PRIMARY else enc.secondary_sliver
        indices = data.draw(st.lists(st.integers(-2, n + 1), unique=True, max_size=min(n + 4, 12)))
        slivers = {}
        for i in indices:
            good = own(i % n)
            kind = data.draw(st.sampled_from(["good", "good", "flip", "swap", "other", "short", "long"]))
            if kind == "flip" and good:
                raw = bytearray(good)
                raw[data.draw(st.integers(0, len(raw) - 1))] ^= 1 << data.draw(st.integers(0, 7))
                good = bytes(raw)
            elif kind == "swap":
                good = own((i + 1) % n)
            elif kind == "other":
                good = (other.primary_sliver if axis == rs2.PRIMARY else other.secondary_sliver)(i % n)
            elif kind == "short":
                good = good[:-2]
            elif kind == "long":
                good = good + b"\0\0"
            slivers[i] = good
        old, rs2._STRIPE_BYTES = rs2._STRIPE_BYTES, stripe
        try:
            result = rs2.verify_slivers(meta, axis, slivers)
        finally:
            rs2._STRIPE_BYTES = old
        assert set(result.good) | set(result.bad) == set(slivers)
        assert not set(result.good) & set(result.bad)
        for i, sliver in slivers.items():
            assert result.bad.get(i) == _per_sliver_verdict(meta, axis, i, sliver), (axis, i)
        s = meta.symbol_size
        for i, leaves in result.good.items():  # the leaves are those of the sliver's own symbols
            sliver = slivers[i]
            want = [rs2.leaf_hash(sliver[k:k + s]) for k in range(0, len(sliver), s)]
            assert [bytes(row) for row in leaves] == want


def test_batched_verification_of_many_slivers_in_stripes_matches_per_sliver():
    n = 31
    enc = rs2.encode_blob(os.urandom(3 << 20), n)
    meta = enc.metadata
    prim = {i: enc.primary_sliver(i) for i in range(n)}
    prim[5] = enc.primary_sliver(6)
    sec = {i: enc.secondary_sliver(i) for i in range(n)}
    sec[30] = bytes(len(sec[30]))
    old, rs2._STRIPE_BYTES = rs2._STRIPE_BYTES, 1 << 20  # several codec calls
    try:
        p, s = rs2.verify_slivers(meta, rs2.PRIMARY, prim), rs2.verify_slivers(meta, rs2.SECONDARY, sec)
    finally:
        rs2._STRIPE_BYTES = old
    assert set(p.bad) == {5} and set(p.good) == set(range(n)) - {5}
    assert set(s.bad) == {30} and set(s.good) == set(range(n)) - {30}
    with pytest.raises(EncodingError):
        rs2.verify_slivers(meta, "diagonal", {})


# --- the encoder's scratch buffers (core/scratch.py) ---------------------------------------


def test_a_scratch_buffer_is_reused_only_once_no_array_uses_it():
    from p2pwalrus.core.scratch import ScratchPool

    pool = ScratchPool(keep=64 << 20, min_bytes=1 << 20, max_bytes=32 << 20)
    a = pool.empty((4, 1 << 20))
    view = a[1:].reshape(-1)  # a view outlives its array: its buffer stays taken
    a[:] = 7
    del a
    b = pool.empty((2, 1 << 20))
    assert pool.made == 2
    b[:] = 9
    assert (view == 7).all()  # b did not take the buffer the view uses
    del view, b
    c = pool.empty((3, 1 << 20))  # both free now: the smaller that fits (the 4 MiB one) is taken
    assert pool.made == 2 and c.nbytes == 3 << 20
    assert pool.empty((1 << 19,)).base is None or pool.made == 2  # under min_bytes: numpy's own
    assert pool.empty((64 << 20,)).nbytes == 64 << 20 and pool.made == 2  # over max_bytes: numpy's own
    del c
    assert pool.clear() == 6 << 20 and pool.held_bytes() == 0


def test_free_scratch_buffers_beyond_keep_are_dropped():
    from p2pwalrus.core.scratch import ScratchPool

    pool = ScratchPool(keep=5 << 20, min_bytes=1 << 20)
    x, y = pool.empty((4 << 20,)), pool.empty((3 << 20,))
    del x, y  # 7 MiB free
    z = pool.empty((8 << 20,))  # none fits: a new buffer, and the free ones are cut to 5 MiB
    assert pool.held_bytes() == (8 << 20) + (3 << 20)
    del z


def test_encodings_one_after_another_reuse_their_scratch_and_agree():
    from p2pwalrus.core import scratch

    data = os.urandom((12 << 20) + 12345)  # at 31 shards: both scratch arrays over 4 MiB
    first = rs2.encode_blob(data, 31)
    def pooled(arr):
        return any(arr.base is b for b in scratch.POOL._buffers)

    assert pooled(first.lower_primary) and pooled(first.row_recovery)
    made = scratch.POOL.made
    ids = {first.blob_id}
    del first
    expected = rs2.compute_metadata(data, 31).to_bytes()
    for _ in range(3):
        enc = rs2.encode_blob(data, 31)
        ids.add(enc.blob_id)
        assert enc.metadata.to_bytes() == expected
        assert b"".join(enc.primary_sliver(i) for i in range(enc.metadata.config.n_primary))[:len(data)] == data
        del enc
    assert len(ids) == 1
    assert scratch.POOL.made == made  # the same buffers each time


def test_a_blob_buffer_the_caller_fills_has_zero_padding_even_in_reused_memory():
    length = (12 << 20) + 1  # at 31 shards a padded buffer of over 4 MiB: scratch memory
    for _ in range(2):  # the second one reuses the first's buffer, left all 0xff
        buf = rs2.blob_buffer(length, 31, filled_by_caller=True)
        assert buf.size == rs2.blob_buffer(length, 31).size
        assert not buf[length:].any()
        buf[:] = 0xFF
        del buf
    data = os.urandom(length)
    buf = rs2.blob_buffer(length, 31, filled_by_caller=True)
    buf[:length] = np.frombuffer(data, np.uint8)
    assert rs2.encode_blob(buf, 31, length=length).blob_id == rs2.compute_blob_id(data, 31)
