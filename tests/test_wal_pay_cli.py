"""`price`, `store --dry-run` and paid stores as processes against a netlab testnet of node
processes whose genesis sets prices (issue 16): the cost is shown before paying, a user
without enough WAL gets the cost and the balance with nothing uploaded, and WAL is
conserved at every node."""

from __future__ import annotations

import json
import os

import pytest

from p2pwalrus.core.wal.amounts import format_amount
from p2pwalrus.core.wal.pricing import store_cost

from .netlab_helpers import node_json, running_lab, wait
from .test_wal_cli import fund, ok, one_sentence_error, run

pytestmark = pytest.mark.slow
STORAGE, WRITE = 1_000_000, 100_000  # FROST per 1 MiB unit per epoch, per unit written


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp("pay") / "net", 4, 10, timeout=90, storage_price=STORAGE,
                     write_price=WRITE) as lab:
        yield lab


def test_price_dry_run_and_a_paid_store(lab, tmp_path):
    net = lab.network_path
    data = tmp_path / "photo.bin"
    data.write_bytes(os.urandom(700_000))
    cost = store_cost(STORAGE, WRITE, 700_000, 10, 3)

    # price: Walrus's formula, from the prices the nodes vouch for
    out = json.loads(ok(run("price", "700000", "--epochs", "3", "--json", network=net)))
    assert out["total"] == cost.total and out["units"] == cost.units and out["storage_price"] == STORAGE
    text = ok(run("price", "700000", "--epochs", "3", network=net))
    assert format_amount(cost.total) in text and "unit(s) of 1 MiB" in text

    # a user without WAL: --dry-run shows the cost and the balance; a store is refused with both,
    # and nothing reaches a node
    user = tmp_path / "user"
    dry = run("store", str(data), "--epochs", "3", "--dry-run", client=user, network=net)
    assert format_amount(cost.total) in ok(dry) and "NOT enough" in dry.stdout
    assert "nothing was uploaded or paid" in dry.stderr
    err = one_sentence_error(run("store", str(data), "--epochs", "3", client=user, network=net))
    assert format_amount(cost.total) in err and "has 0 WAL" in err and "nothing was uploaded" in err
    # (the in-process test counts store requests at the nodes: none; here no node holds a blob)
    assert all(node_json(lab, i)["blobs"] == 0 for i in range(4))

    # funded: the cost is printed before paying, the store goes through and reads back
    addr = ok(run("wallet", "address", client=user, network=net))
    fund(lab, addr, "1WAL")
    res = run("store", str(data), "--epochs", "3", client=user, network=net, timeout=120)
    blob_id = ok(res).splitlines()[-1]
    assert f"paying {format_amount(cost.total)}" in res.stderr
    assert res.stderr.index("paying") < res.stderr.index("stored")
    ok(run("read", blob_id, "-o", str(tmp_path / "copy.bin"), client=user, network=net))
    assert (tmp_path / "copy.bin").read_bytes() == data.read_bytes()
    balance = json.loads(ok(run("wallet", "balance", "--json", client=user, network=net)))["balance"]
    assert balance == 10**9 - cost.total

    # every node holds the payment in its fund, and WAL is conserved at each
    def settled():
        infos = [node_json(lab, i).get("ledger") or {} for i in range(4)]
        return all(i.get("funds") == cost.total and i.get("total") == i.get("supply") for i in infos)

    wait(settled, 30, "the payment applied at every node, WAL conserved")


def test_info_shows_prices_and_dry_run_prices_a_chunked_file_whole(lab, tmp_path):
    from p2pwalrus.client.payments import file_cost

    net = lab.network_path
    info = json.loads(ok(run("info", "--json", network=net)))
    assert info["prices"]["storage_price_per_unit"] == STORAGE and info["prices"]["write_price_per_unit"] == WRITE
    assert "per 1 MiB unit of encoded size per epoch" in ok(run("info", network=net))
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(700_000))
    total, blobs = file_cost(STORAGE, WRITE, 700_000, 10, 2, chunk_size=300_000)
    out = json.loads(ok(run("store", str(big), "--epochs", "2", "--chunk-size", "300000", "--dry-run", "--json",
                            client=tmp_path / "u", network=net)))
    assert out["total"] == total and out["blobs"] == blobs == 4 and out["dry_run"] and out["balance"] == 0
    # a size over the largest blob is priced as the chunks and manifest `store` would make
    total, blobs = file_cost(STORAGE, WRITE, 3 << 20, 10, 5)
    out = json.loads(ok(run("price", "3M", "--epochs", "5", "--json", network=net)))
    assert out["total"] == total and out["blobs"] == blobs == 3
