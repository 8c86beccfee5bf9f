"""netlab: real node processes on 127.0.0.1, faults shown through the nodes' own status.

Each test is bounded; the whole file runs in about a minute on 2 cores.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
import time
import zlib
from pathlib import Path

import pytest

import netlab
from netlab.lab import FAULTS_FILE, Lab, LabError, pid_alive
from netlab.plot import plot_timeseries
from netlab.scenario import ScenarioError, eval_bound, load_scenario, parse_scenario, run_scenario

from .netlab_helpers import gone as _gone, node_json as _node_json, wait as _wait
from p2pwalrus.core import protocols

pytestmark = pytest.mark.slow

SHIPPED_SCENARIOS = sorted(p.stem for p in (Path(netlab.__file__).parent / "scenarios").glob("*.toml"))


# --- no processes ------------------------------------------------------------------------


def test_bounds_and_scenarios_parse():
    assert [eval_bound(x, 10) for x in ("n", "f", "n-f", "n-2f", "2f+1", 4)] == [10, 3, 7, 4, 7, 4]
    assert eval_bound("n-f", 31) == 21
    with pytest.raises(ScenarioError):
        eval_bound("n*2", 10)
    assert {"churn", "lose_f", "partition", "wipe"} <= set(SHIPPED_SCENARIOS)
    for name in SHIPPED_SCENARIOS:
        full, ci = load_scenario(name), load_scenario(name, ci=True)
        assert ci.nodes <= 5 and ci.nodes <= full.nodes
    with pytest.raises(ScenarioError):
        parse_scenario({"steps": [{"action": "explode"}]})


def test_plot_is_a_valid_png():
    samples = [{"t": float(t), "alive": 5 - (t > 3), "shards": {"a": 10 if t < 3 or t > 6 else 7}} for t in range(10)]
    png = plot_timeseries(samples, [(3.0, "kill")], 10, ["a"], title="t")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", png[16:24])
    idat_len = struct.unpack(">I", png[33:37])[0]
    raw = zlib.decompress(png[41:41 + idat_len])
    assert len(raw) == h * (1 + 3 * w)


def test_partition_writes_deny_lists(tmp_path):
    lab = Lab.create(tmp_path / "net", 5, 10)
    groups = lab.partition("0,1/2,3")
    assert groups == [[0, 1], [2, 3, 4]]
    deny0 = json.loads((Path(lab.nodes[0].data_dir) / FAULTS_FILE).read_text())["deny"]
    assert sorted(deny0) == sorted(lab.nodes[i].peer_id for i in (2, 3, 4))
    deny4 = json.loads((Path(lab.nodes[4].data_dir) / FAULTS_FILE).read_text())["deny"]
    assert sorted(deny4) == sorted(lab.nodes[i].peer_id for i in (0, 1))
    lab.slow(2, 150)
    lab.heal()
    f2 = json.loads((Path(lab.nodes[2].data_dir) / FAULTS_FILE).read_text())
    assert f2["deny"] == [] and f2["delay_ms"] == 150
    with pytest.raises(LabError):
        lab.partition("0,1/1,2")
    with pytest.raises(LabError):
        lab.partition("0,1,2,3,4")


# --- real node processes --------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_up_then_down_leaves_no_process(tmp_path):
    lab = Lab.create(tmp_path / "net", 5, 10)
    try:
        lab.up()
        lab.wait_converged(45)
        st = lab.status()
        assert st["nodes_alive"] == 5 and st["converged"]
        assert all(r["live"] == 5 for r in st["nodes"])
        saved = json.loads((tmp_path / "net" / "netlab.json").read_text())
        pids = [n["pid"] for n in saved["nodes"]]
        assert all(pid_alive(p) for p in pids)
        assert [n["peer_id"] for n in saved["nodes"]] == [_node_json(lab, i)["peer_id"] for i in range(5)]
        net_text = (tmp_path / "net" / "network.toml").read_text()
        assert lab.nodes[0].addr in net_text
    finally:
        ended = Lab.open(tmp_path / "net").down(timeout=10)
    assert sorted(ended) == sorted(pids)
    _wait(lambda: _gone(pids), 5, "node processes to exit")
    for p in pids:  # not even a zombie is left: the PID is gone or is some other process
        cmd = Path(f"/proc/{p}/cmdline")
        assert not cmd.exists() or str(tmp_path).encode() not in cmd.read_bytes()


def _node_supports_faults() -> bool:
    spec = importlib.util.find_spec("p2pwalrus.node.service")
    return spec is not None and "faults.json" in Path(spec.origin).read_text()


@pytest.mark.timeout(90)
@pytest.mark.skipif(not _node_supports_faults(), reason="StorageNode does not apply DATA_DIR/faults.json yet")
def test_partition_splits_live_sets_and_heal_joins_them(tmp_path):
    lab = Lab.create(tmp_path / "net", 4, 10)
    try:
        lab.up()
        lab.wait_converged(45)
        lab.partition("0,1/2,3")
        side_a = {lab.nodes[0].peer_id, lab.nodes[1].peer_id}

        def split():
            return all(set(_node_json(lab, i)["live"]) | {lab.nodes[i].peer_id} == side_a for i in (0, 1))

        _wait(split, 30, "the partition to show in the live sets")
        lab.heal()
        lab.wait_converged(45)
    finally:
        lab.down()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", SHIPPED_SCENARIOS)
def test_shipped_scenario_passes_in_ci_size(tmp_path, name):
    sc = load_scenario(name, ci=True)
    report = run_scenario(sc, tmp_path / "run", require_repair=True, log=lambda m: None)
    assert report["ok"], report["failure"]
    assert (tmp_path / "run" / "plot.png").read_bytes()[:4] == b"\x89PNG"
    assert "PASSED" in (tmp_path / "run" / "report.md").read_text()
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    if name in ("lose_f", "churn"):
        assert saved["figures"]["min_nodes_alive"] < sc.nodes  # nodes were killed
    if name == "pay":  # every store and extension paid; each node's funds hold exactly that, WAL conserved
        assert saved["figures"]["paid"] > 0 and saved["wal"]["conserved"]
        assert {n["funds"] for n in saved["wal"]["nodes"].values()} == {saved["figures"]["paid"]}
        assert "WAL conserved" in (tmp_path / "run" / "report.md").read_text()
    assert saved["figures"]["reads"] and all(r["ok"] for r in saved["figures"]["reads"])
    assert saved["samples"] and all(b["final_shards_stored"] is not None for b in saved["blobs"].values())
    assert saved["figures"]["wal_conserved"] is True  # every running node's WAL equals the genesis supply
    if name == "economy":  # issue 16 on node processes: conservation, the price move, the rewards rule
        _check_economy(saved)
    if name == "epochs":  # stake in, stake out, more stake: three changes that move shards
        changes = saved["figures"]["epochs"]["changes"]
        assert sum(1 for c in changes if c["shards_moved"]) >= 3 and saved["figures"]["epochs"]["shards_moved"]
    pids = [n["pid"] for n in json.loads((tmp_path / "run" / "net" / "netlab.json").read_text())["nodes"]]
    _wait(lambda: _gone(pids), 5, "the scenario's nodes to be torn down")


def _check_economy(saved: dict) -> None:
    """Issue 16's must-be-trues as the economy scenario's report shows them: WAL conserved at
    every running node after each epoch change; the decided price is the quorum-below one of
    the votes (f of the weight voting the highest price there is) and the next store paid
    it; the node wiped and kept down earned nothing for its epoch down, the others earned."""
    from p2pwalrus.core.wal.pricing import quorum_below

    fig = saved["figures"]
    snaps = fig["wal_by_change"]
    assert len(snaps) >= 3 and all(s["conserved"] and s["nodes"] for s in snaps)
    for s in snaps:
        assert all(v["total"] == v["supply"] for v in s["nodes"].values())
    assert snaps[-1]["nodes"] and all(v["rewards_paid"] > 0 for v in snaps[-1]["nodes"].values())
    per_change = fig["wal_per_change"]  # every change, at every node running then, as it applied it
    assert len(per_change) >= 4
    assert all(v["total"] == v["supply"] for row in per_change.values() for v in row.values())
    # a node that missed payments pulls them before it applies the credits: no fund goes negative
    assert all(v["funds"] >= 0 for row in per_change.values() for v in row.values())
    (vote,) = fig["votes"]
    assert 0 < vote["extreme_weight"] <= vote["f"]
    by_epoch = {e["epoch"]: e for e in fig["economy"]["epochs"]}
    voted_at = by_epoch[vote["epoch"]]
    weights = voted_at["shards"]
    expected = quorum_below([((1 << 64) - 1 if int(k) in vote["extreme_nodes"] else vote["storage_price"], w)
                             for k, w in weights.items()], saved["n_shards"])
    assert expected == vote["storage_price"] == vote["expected"][0]  # the extreme voters do not move it
    (change,) = fig["price_changes"]
    assert change["prices"] == vote["expected"] == [vote["storage_price"], vote["write_price"]]
    assert by_epoch[change["epoch"]]["storage_price"] == vote["storage_price"]
    assert by_epoch[0]["storage_price"] != vote["storage_price"]
    (store,) = fig["stores_at_voted_price"]
    assert store["cost"] == store["expected"] > 0
    (lost,) = fig["rewards_rule"]
    credit = by_epoch[lost["epoch"] + 1]
    assert credit["rewards"][str(lost["node"])] == 0 and lost["earned_before"] > 0
    assert lost["others"] and all(v > 0 for v in lost["others"].values())


def test_slow_adds_latency_to_every_exchange_with_that_node(tmp_path):
    import trio

    from p2pwalrus.client.client import open_client

    lab = Lab.create(tmp_path / "net", 3, 7)
    try:
        lab.up()
        lab.wait_converged(45)
        target = lab.nodes[2]

        async def info_latency() -> float:
            async with open_client(lab.client_network()) as client:
                await client.refresh_membership()
                await client.call(target.peer_id, protocols.NODE_INFO, {})  # connect first
                t0 = time.monotonic()
                await client.call(target.peer_id, protocols.NODE_INFO, {})
                return time.monotonic() - t0

        before = trio.run(info_latency)
        lab.slow(2, delay_ms=600)
        _wait(lambda: _node_json(lab, 2).get("faults", {}).get("delay_ms") == 600, 10, "the delay to apply")
        after = trio.run(info_latency)
        assert after >= 0.6 > before
    finally:
        lab.down()


def test_up_with_gateway_serves_http_and_down_stops_it(tmp_path):
    import urllib.request

    lab = Lab.create(tmp_path / "net", 4, 7)  # 3 nodes could not keep 7 shards' slivers apart
    try:
        lab.up()
        lab.wait_converged(45)
        url = lab.start_gateway()
        gateway_pid = lab.meta["gateway"]["pid"]
        data = os.urandom(5000)
        put = urllib.request.Request(url + "/v1/blobs?epochs=2", data=data, method="PUT")
        with urllib.request.urlopen(put, timeout=60) as r:
            blob_id = json.loads(r.read())["newlyCreated"]["blobObject"]["blobId"]
        with urllib.request.urlopen(f"{url}/v1/blobs/{blob_id}", timeout=60) as r:
            assert r.read() == data
    finally:
        lab.down()
    _wait(lambda: _gone([gateway_pid]), 5, "the gateway to stop")


def test_ten_processes_told_one_bootstrap_address_all_know_all_ten_within_30s(tmp_path):
    lab = Lab.create(tmp_path / "net", 10, 31, bootstrap_count=1)
    try:
        assert lab.base_network().bootstrap == (lab.nodes[0].addr,)
        t0 = time.monotonic()
        lab.up()
        # every node lists exactly the ten as live, one shard map, held for a second
        lab.wait_converged(30, stable=1.0)
        assert time.monotonic() - t0 < 30
    finally:
        lab.down()


@pytest.mark.timeout(240)
def test_inproc_at_scale_forms_one_network():
    """`netlab inproc` above 20 nodes (scaled timings, three bootstrap peers, low watermarks)
    forms one network; the 100-node figure is measured on demand (`netlab inproc`)."""
    from netlab.inproc import measure

    lines = []
    res = measure(24, 31, timeout=150, log=lines.append)
    assert res["converged"], res.get("detail")
    assert res["nodes"] == 24 and res["peak_rss_mb"] > 0
    print(res)


def test_inprocess_restart_of_the_bootstrap_node_rejoins_the_network(tmp_path):
    """Node 0 is every other node's bootstrap peer, and its own: restarted, it is back in
    every live set (it failed one run in ten of the inconsistent-blob repair test)."""
    import multiaddr
    import trio

    from netlab.inprocess import inprocess_network

    async def main():
        with trio.fail_after(60):
            async with inprocess_network(4, 10, tmp_path) as cluster:
                first = cluster.slots[0].node.node.listen_addrs()
                await cluster.kill(0)
                # Killed means gone from its port: py-libp2p's listener task outlived the host,
                # and a restart on the same port shared it with the dead node (SO_REUSEPORT).
                port = int(multiaddr.Multiaddr(first[0]).value_for_protocol("tcp"))
                with pytest.raises(OSError):
                    await trio.open_tcp_stream("127.0.0.1", port)
                await cluster.start(0)
                assert cluster.slots[0].node.node.listen_addrs() == first
                await cluster.wait_converged(30)
                assert all(len(n.members.live) == 4 for n in cluster.alive())

    trio.run(main)
