"""The client's read path against scripted holders: systematic slivers first, spares only as needed.

No network: a Client whose certificate, metadata and sliver calls are served from an
encoded blob, each pair's holder behaving as the test says (ok, fail, corrupt, missing,
hang, invalid). Reads through real nodes are in test_write_read.py.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import trio

from p2pwalrus.client import read as read_mod  # (the read path's tunables live there)
from p2pwalrus.client.client import BlobInvalidError, Client
from p2pwalrus.config import NetworkConfig
from p2pwalrus.core import codec, rs2
from p2pwalrus.errors import NotEnoughShardsError
from p2pwalrus.core import protocols

N = 10  # f = 3, R = 4 systematic rows, 6 recovery rows


class ScriptedClient(Client):
    def __init__(self, data: bytes, behaviour: dict[int, str], holders: int = N):
        super().__init__(NetworkConfig(name="t", n_shards=N, epoch_length=3600.0, genesis_time=0.0), None, None)
        self.enc = rs2.encode_blob(data, N)
        self.behaviour = behaviour
        self.shard_map = SimpleNamespace(owner=lambda shard: f"node{shard % holders}")
        self.asked: list[int] = []
        self.into: set[int] = set()  # pairs read into the caller's buffer

    async def certified(self, blob_id):
        return None

    async def metadata(self, blob_id):
        return self.enc.metadata

    async def call_with_blob(self, peer_id, protocol, header, max_size, timeout=10.0, into=None):
        if protocol == protocols.GET_PROOF:  # these holders never have a proof for what they say
            return {"ok": False, "error": "not found"}, None
        pair = header["pair"]
        assert header["kind"] == "primary"
        assert peer_id == self.shard_map.owner(rs2.shard_for_pair(pair, self.enc.blob_id, N))
        self.asked.append(pair)
        what = self.behaviour.get(pair, "ok")
        await trio.sleep(0.01)
        if what == "fail":
            raise ConnectionError("holder down")
        if what == "hang":
            await trio.sleep_forever()
        if what == "missing":
            return {"ok": False, "error": "not stored"}, None
        if what == "missing-once":  # a holder still writing it, as right after a store
            self.behaviour[pair] = "ok"
            return {"ok": False, "error": "not stored"}, None
        if what == "invalid":
            return {"ok": False, "invalid": True}, None
        raw = self.enc.primary_sliver(pair)
        if what == "corrupt":
            raw = bytes([raw[0] ^ 1]) + raw[1:]
        if into is not None:  # as rpc.call_for_blob: the frame is read into the caller's buffer
            assert len(raw) == len(into)
            into[:] = raw
            self.into.add(pair)
            return {"ok": True}, into
        return {"ok": True}, raw


@pytest.fixture
def data():
    return os.urandom(5000)


@pytest.fixture
def no_codec_decode(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the codec decoded although every systematic sliver was there")

    monkeypatch.setattr(codec, "decode_symbols", refuse)


async def test_a_healthy_read_asks_only_the_systematic_slivers_and_decodes_nothing(data, no_codec_decode):
    client = ScriptedClient(data, {})
    r = client.enc.metadata.config.n_primary
    with trio.fail_after(10):
        assert await client.read(client.enc.blob_id) == data
        parts = await client.read_parts(client.enc.blob_id)
    assert sorted(client.asked) == sorted(list(range(r)) * 2)
    # Each systematic row was read into one buffer, and the parts are views of it (no copies).
    assert client.into == set(range(r)) and all(isinstance(p, memoryview) for p in parts)
    assert b"".join(parts) == data


async def test_a_failed_or_corrupt_systematic_sliver_is_replaced_by_one_recovery_row_each(data):
    client = ScriptedClient(data, {1: "corrupt", 3: "fail"})
    r = client.enc.metadata.config.n_primary
    with trio.fail_after(10):
        assert await client.read(client.enc.blob_id) == data
    assert sorted(client.asked[:r]) == list(range(r))
    spares = client.asked[r:]
    assert len(spares) == 2 and all(p >= r for p in spares)


async def test_spares_go_to_holders_that_have_not_failed_first(data):
    # 5 holders, each of two shards: a dead holder's other pair is not asked as a spare while others remain.
    client = ScriptedClient(data, {}, holders=5)
    owner = client.shard_map.owner
    holder = {p: owner(rs2.shard_for_pair(p, client.enc.blob_id, N)) for p in range(N)}
    dead = holder[0]
    client.behaviour = {p: "fail" for p in range(N) if holder[p] == dead}
    r = client.enc.metadata.config.n_primary
    with trio.fail_after(10):
        assert await client.read(client.enc.blob_id) == data
    assert not [p for p in client.asked[r:] if holder[p] == dead]


async def test_any_r_verified_slivers_still_decode_when_systematic_ones_are_lost(data):
    client = ScriptedClient(data, {0: "fail", 1: "missing", 2: "corrupt", 3: "fail", 4: "fail"})
    with trio.fail_after(10):
        assert await client.read(client.enc.blob_id) == data


async def test_a_hung_holder_is_hedged_once_the_others_have_arrived(data, monkeypatch):
    monkeypatch.setattr(read_mod, "READ_HEDGE_MIN", 0.2)
    monkeypatch.setattr(read_mod, "READ_HEDGE_TICK", 0.02)
    client = ScriptedClient(data, {2: "hang"})
    with trio.fail_after(10):
        assert await client.read(client.enc.blob_id) == data
    assert len(client.asked) == client.enc.metadata.config.n_primary + 1


async def test_a_systematic_sliver_missing_at_first_is_asked_again_instead_of_decoding(data, no_codec_decode,
                                                                                        monkeypatch):
    monkeypatch.setattr(read_mod, "SYSTEMATIC_RETRY_PAUSE", 0.05)
    monkeypatch.setattr(read_mod, "SYSTEMATIC_GRACE_MIN", 2.0)  # the spare arrives first; waiting pays
    client = ScriptedClient(data, {1: "missing-once"})
    r = client.enc.metadata.config.n_primary
    with trio.fail_after(10):
        assert await client.read(client.enc.blob_id) == data
    assert client.asked.count(1) == 2 and len([p for p in client.asked if p >= r]) == 1


async def test_a_systematic_sliver_still_missing_after_the_grace_is_decoded_around(data, monkeypatch):
    monkeypatch.setattr(read_mod, "SYSTEMATIC_RETRY_PAUSE", 0.05)
    # A grace well above the retry pause: with the default 0.05 s, a loaded CI machine let the
    # grace after the spare's arrival end before the retry was made (asked once, ci37). The read
    # still ends at once when the retry fails: nothing more is in flight.
    monkeypatch.setattr(read_mod, "SYSTEMATIC_GRACE_MIN", 2.0)
    monkeypatch.setattr(read_mod, "SYSTEMATIC_GRACE_MAX", 5.0)
    client = ScriptedClient(data, {1: "missing"})
    with trio.fail_after(10):
        assert await client.read(client.enc.blob_id) == data
    assert client.asked.count(1) == 2  # asked once more, then decoded without it


async def test_too_few_good_slivers_is_a_clear_error_not_a_hang(data):
    r = rs2.EncodingConfig(N).n_primary
    client = ScriptedClient(data, {p: "fail" for p in range(N - r + 1)})
    with trio.fail_after(10), pytest.raises(NotEnoughShardsError, match=f"of the {r} needed"):
        await client.read(client.enc.blob_id)
    # Every pair asked; a failed systematic one once more (as a holder still writing it may be).
    assert sorted(client.asked) == sorted(list(range(N)) + list(range(r)))


async def test_a_holder_saying_invalid_with_a_proof_that_verifies_ends_the_read(data, monkeypatch):
    client = ScriptedClient(data, {0: "invalid"})
    checked = []

    async def proven(blob_id, peer):
        checked.append(peer)
        return True

    monkeypatch.setattr(client, "proven_invalid", proven)
    with trio.fail_after(10), pytest.raises(BlobInvalidError):
        await client.read(client.enc.blob_id)
    assert checked == [client.shard_map.owner(rs2.shard_for_pair(0, client.enc.blob_id, N))]


async def test_a_holder_saying_invalid_without_a_proof_is_ignored_and_the_read_goes_on(data):
    client = ScriptedClient(data, {0: "invalid"})
    with trio.fail_after(10):
        assert await client.read(client.enc.blob_id) == data
    assert len(client.asked) == client.enc.metadata.config.n_primary + 1  # a spare stood in
