"""Paying for storage through real nodes on 127.0.0.1 (one trio process, issue 16).

On a network whose genesis sets prices: a store pays its cost (computed as Walrus does)
into the storage fund and every node applies it; a client without enough WAL is refused
with the cost and its balance before anything is uploaded; a holder refuses a store whose
payment is missing, short, or bound to another blob; an extension pays for the added
epochs. WAL is conserved at every node throughout. At price 0 nothing is asked.
"""

from __future__ import annotations

import os
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
import trio

from netlab.inprocess import inprocess_network
from netlab.inprocess import test_network as make_network  # (not collected as a test)
from p2pwalrus.client.client import open_client
from p2pwalrus.client.payments import InsufficientFundsError
from p2pwalrus.core import rs2
from p2pwalrus.core.wal.genesis import make_genesis
from p2pwalrus.core.wal.ledger import check_conservation
from p2pwalrus.core.wal.pricing import store_cost
from p2pwalrus.gateway.walrus_json import blob_store_json
from p2pwalrus.p2p import rpc
from p2pwalrus.p2p.framing import write_frame
from p2pwalrus.p2p.identity import load_or_create_identity, peer_id_of

from .wal_helpers import address, assert_refused, key
from p2pwalrus.core import protocols

WAL = 10**9
RICH, POOR = key(400), key(401)
STORAGE_PRICE, WRITE_PRICE = 10_000_000, 1_000_000  # 0.01 WAL per unit per epoch, 0.001 WAL per unit written


def priced_net(base: Path, n_nodes: int, n_shards: int = 10, *, storage_price=STORAGE_PRICE,
               write_price=WRITE_PRICE):
    nodes = [str(peer_id_of(load_or_create_identity(base / f"node{i:03d}"))) for i in range(n_nodes)]
    net = make_network(n_shards)
    genesis = make_genesis(network=net.name, n_shards=n_shards, genesis_time=net.genesis_time,
                           epoch_length=net.epoch_length, committee=[(p, 100 * WAL) for p in nodes],
                           accounts=[(address(RICH), 5 * WAL), (address(POOR), 1000)],
                           storage_price=storage_price, write_price=write_price,
                           parameters={"max_epochs_ahead": net.max_epochs_ahead})
    return replace(net, genesis=genesis)


def conserved_everywhere(cluster) -> None:
    for node in cluster.alive():
        check_conservation(node.ledger.ledger)


async def _raw_store(client, peer: str, enc: rs2.EncodedBlob, epoch: int, end_epoch: int, payment) -> dict:
    """One STORE request to ``peer`` for its pairs of ``enc``, with ``payment`` as given."""
    n = client.net.n_shards
    pairs = [rs2.pair_for_shard(s, enc.blob_id, n) for s in client.shard_map.shards_of(peer)]
    header = {"blob_id": enc.blob_id.hex(), "epoch": epoch, "end_epoch": end_epoch, "pairs": pairs,
              "deletable": False, "owner": client.peer_id}
    if payment is not None:
        header["payment"] = payment
    stream = await client.new_stream(peer, protocols.STORE)
    try:
        await rpc.send_json(stream, header)
        await write_frame(stream, enc.metadata.to_bytes())  # the holder judges the payment before any sliver
        return await rpc.recv_json(stream)
    finally:
        await rpc.close_quietly(stream)


async def test_store_pays_refuses_the_poor_and_payments_bind_to_one_blob(tmp_path):
    net = priced_net(tmp_path / "n", 4)
    n = net.n_shards
    data = os.urandom(300_000)
    with trio.fail_after(150):
        async with inprocess_network(4, n, tmp_path / "n", net=net) as cluster:
            # --- a client without enough WAL: the cost and its balance, nothing uploaded
            async with open_client(cluster.net, POOR) as client:
                await client.refresh_membership()
                client.payer_journal = tmp_path / "poor-wallet"
                before = sum(node.counters["store_requests"] for node in cluster.alive())
                with pytest.raises(InsufficientFundsError) as info:
                    await client.store(data, epochs=3)
                cost = store_cost(STORAGE_PRICE, WRITE_PRICE, len(data), n, 3)
                assert info.value.cost == cost.total and info.value.balance == 1000
                assert "0.000001 WAL" in str(info.value)  # the balance, in WAL
                assert "nothing was uploaded" in str(info.value)
                assert sum(node.counters["store_requests"] for node in cluster.alive()) == before
                assert all(not node.store.list_blobs() for node in cluster.alive())

            async with open_client(cluster.net, RICH) as client:
                await client.refresh_membership()
                client.payer_journal = tmp_path / "rich-wallet"
                quote = await client.quote(len(data), 3)
                assert quote.cost == cost and quote.balance == 5 * WAL
                # --- a store with a price: paid into the fund, confirmed everywhere
                result = await client.store(data, epochs=3)
                assert result.cost == cost.total
                assert blob_store_json(result)["newlyCreated"]["cost"] == cost.total
                assert await client.read(result.blob_id) == data
                view = await client.payer.wallet.account()
                assert view.balance == 5 * WAL - cost.total
                for node in cluster.alive():
                    assert sum(node.ledger.ledger.funds.values()) == cost.total
                conserved_everywhere(cluster)
                # the certificate of that payment, as it went with the store
                payment = client.payer.wallet.journal.entries()[-1]["certificate"]
                epoch = client.net.current_epoch()
                peer = next(p for p in client.shard_map.nodes if client.shard_map.shards_of(p))

                # --- reuse for another blob: refused before any sliver
                other = rs2.encode_blob(os.urandom(300_000), n)
                reply = await _raw_store(client, peer, other, epoch, epoch + 3, payment)
                assert_refused(reply, "another blob")
                # --- no payment at all: refused, with the price it needed
                reply = await _raw_store(client, peer, other, epoch, epoch + 3, None)
                assert_refused(reply, "must be paid for")
                # --- the same blob, for more epochs than were paid: refused
                same = rs2.encode_blob(data, n)
                reply = await _raw_store(client, peer, same, epoch, epoch + 5, payment)
                assert_refused(reply, "covers epochs")
                # --- the same blob stored again within what was paid: the journaled payment serves,
                # nothing is paid twice
                again = await client.store(data, epochs=3, force=True)
                assert again.cost == 0 and not again.already_certified
                assert (await client.payer.wallet.account()).balance == 5 * WAL - cost.total

                # --- extend pays the storage price of the added epochs only
                new_cert = await client.extend(result.blob_id, 5)
                added = new_cert.end_epoch - result.certificate.end_epoch
                ext = store_cost(STORAGE_PRICE, WRITE_PRICE, len(data), n, added, write=False)
                assert ext.total == STORAGE_PRICE * cost.units * added
                view = await client.payer.wallet.account()
                assert view.balance == 5 * WAL - cost.total - ext.total
                for node in cluster.alive():
                    assert sum(node.ledger.ledger.funds.values()) == cost.total + ext.total
                    assert node.ledger.counters["payments_refused"] >= 0
                conserved_everywhere(cluster)


async def test_price_zero_stores_without_any_wal(tmp_path):
    net = priced_net(tmp_path / "n", 4, storage_price=0, write_price=0)
    with trio.fail_after(120):
        async with inprocess_network(4, net.n_shards, tmp_path / "n", net=net) as cluster:
            stranger = key(999)  # never received WAL: an unknown account
            async with open_client(cluster.net, stranger) as client:
                await client.refresh_membership()
                client.payer_journal = tmp_path / "w"
                result = await client.store(b"free as in beer", epochs=2)
                assert result.cost == 0
                await client.extend(result.blob_id, 4)
                assert await client.read(result.blob_id) == b"free as in beer"
            for node in cluster.alive():
                assert not node.ledger.ledger.funds
            conserved_everywhere(cluster)


async def test_gateway_pays_from_its_own_account_and_answers_402_when_it_cannot(tmp_path):
    import httpx

    from p2pwalrus.client.wallet import Wallet
    from p2pwalrus.gateway import GatewayConfig, serve_gateway

    net = priced_net(tmp_path / "n", 4)
    data = os.urandom(200_000)
    cost = store_cost(STORAGE_PRICE, WRITE_PRICE, len(data), net.n_shards, 2)
    with trio.fail_after(150):
        async with inprocess_network(4, net.n_shards, tmp_path / "n", net=net) as cluster:
            async with trio.open_nursery() as nursery:
                gw, urls = await nursery.start(partial(serve_gateway, cluster.net, GatewayConfig(), "127.0.0.1:0",
                                                       wallet_dir=tmp_path / "gw"))
                async with httpx.AsyncClient(base_url=urls[0], timeout=60.0) as http:
                    status = (await http.get("/status")).json()
                    assert status["prices"]["storage_price_per_unit"] == STORAGE_PRICE
                    assert status["prices"]["write_price_per_unit"] == WRITE_PRICE
                    assert status["prices"]["account"] == gw.client.peer_id and status["prices"]["balance"] == 0
                    api = (await http.get("/v1/api")).json()
                    assert api["info"]["x-prices"]["storage_price_per_unit"] == STORAGE_PRICE
                    assert "402" in api["paths"]["/v1/blobs"]["put"]["responses"]
                    dash = (await http.get("/dashboard/state")).json()
                    assert dash["prices"]["write_price_per_unit"] == WRITE_PRICE

                    # the gateway's account is empty: 402 in Walrus's error shape, nothing stored
                    before = sum(n.counters["store_requests"] for n in cluster.alive())
                    r = await http.put("/v1/blobs", params={"epochs": 2}, content=data)
                    assert r.status_code == 402, r.text
                    err = r.json()["error"]
                    assert err["code"] == 402 and err["status"] == "FAILED_PRECONDITION" and err["details"] == []
                    assert "has 0 WAL" in err["message"] and "nothing was uploaded" in err["message"]
                    assert sum(n.counters["store_requests"] for n in cluster.alive()) == before

                    # the operator funds it: the PUT is paid, and says what it cost
                    async with open_client(cluster.net, RICH) as client:
                        await client.refresh_membership()
                        await Wallet(client, RICH, tmp_path / "rich").transfer(gw.client.peer_id, WAL)
                    r = await http.put("/v1/blobs", params={"epochs": 2}, content=data)
                    assert r.status_code == 200, r.text
                    assert r.json()["newlyCreated"]["cost"] == cost.total
                nursery.cancel_scope.cancel()
            for node in cluster.alive():
                assert sum(node.ledger.ledger.funds.values()) == cost.total
            conserved_everywhere(cluster)


async def test_a_chunked_file_pays_for_each_chunk_and_its_manifest_without_locking_the_account(tmp_path):
    from p2pwalrus.client.chunked import BytesSource, read_to, store_stream
    from p2pwalrus.client.payments import file_cost

    net = priced_net(tmp_path / "n", 4)
    data = os.urandom(350_000)
    total, blobs = file_cost(STORAGE_PRICE, WRITE_PRICE, len(data), net.n_shards, 2, chunk_size=100_000)
    assert blobs == 5  # four chunks and the manifest
    with trio.fail_after(150):
        async with inprocess_network(4, net.n_shards, tmp_path / "n", net=net) as cluster:
            async with open_client(cluster.net, RICH) as client:
                await client.refresh_membership()
                client.payer_journal = tmp_path / "rich"
                # chunks are stored in parallel: their payments must not sign two orders at one sequence
                result = await store_stream(client, BytesSource(data), epochs=2, total=len(data),
                                            chunk_size=100_000, parallel=4)
                out = bytearray()

                async def write(chunk) -> None:
                    out.extend(chunk)

                await read_to(client, result.blob_id, write)
                assert bytes(out) == data
                view = await client.payer.wallet.account()
                assert view.balance == 5 * WAL - total and view.next_sequence == blobs
            for node in cluster.alive():
                assert sum(node.ledger.ledger.funds.values()) == total
            conserved_everywhere(cluster)
