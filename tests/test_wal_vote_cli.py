"""The `vote` command and `node --vote-*` options write the node's signed vote (no network
needed): prices as amounts, values not given kept from the last vote, proposals, refusals
in one sentence, and a file a running node reads (issue 16)."""

from __future__ import annotations

import json
from dataclasses import replace

from click.testing import CliRunner

from netlab.inprocess import test_network as make_network  # (not collected as a test)
from p2pwalrus.cli import main
from p2pwalrus.config import network_to_toml
from p2pwalrus.core.wal.genesis import make_genesis
from p2pwalrus.p2p.identity import load_or_create_identity, peer_id_of
from p2pwalrus.node.vote_service import VOTE_FILE, read_vote

from .wal_helpers import address, key


def network_file(tmp_path, storage_price=5, write_price=7):
    net = make_network(10)
    g = make_genesis(network=net.name, n_shards=10, genesis_time=net.genesis_time, epoch_length=net.epoch_length,
                     committee=[(address(key(1)), 100)], accounts=[], storage_price=storage_price,
                     write_price=write_price)
    path = tmp_path / "network.toml"
    path.write_text(network_to_toml(replace(net, genesis=g)))
    return path, g


def test_vote_command_signs_and_keeps_the_last_values(tmp_path):
    path, g = network_file(tmp_path)
    d = tmp_path / "node"
    run = CliRunner().invoke
    res = run(main, ["--network", str(path), "vote", "--data-dir", str(d), "--storage-price", "0.000001WAL"])
    assert res.exit_code == 0, res.output
    assert "voted storage price 0.000001 WAL" in res.output
    vote = read_vote(d)  # the signature holds (checked when read)
    assert vote.vote.node == str(peer_id_of(load_or_create_identity(d))) and vote.vote.genesis == g.hash()
    assert (vote.vote.storage_price, vote.vote.write_price) == (1000, 7)  # write price: genesis's
    res = run(main, ["--network", str(path), "vote", "--data-dir", str(d), "--write-price", "300FROST",
                     "--propose", "max_epochs_ahead=200"])
    assert res.exit_code == 0, res.output
    vote = read_vote(d)
    assert (vote.vote.storage_price, vote.vote.write_price) == (1000, 300)  # storage price kept
    assert dict(vote.vote.proposals) == {"max_epochs_ahead": 200}
    shown = json.loads(run(main, ["--network", str(path), "vote", "--data-dir", str(d), "--show"]).output)
    assert shown["write_price"] == 300
    # a tampered file is not a vote
    obj = json.loads((d / VOTE_FILE).read_text())
    obj["vote"]["storage_price"] = 1
    (d / VOTE_FILE).write_text(json.dumps(obj))
    assert read_vote(d) is None


def test_vote_refusals_are_one_sentence(tmp_path):
    path, _ = network_file(tmp_path)
    run = CliRunner().invoke
    res = run(main, ["--network", str(path), "vote", "--data-dir", str(tmp_path / "n"), "--storage-price", "1.5"])
    assert res.exit_code == 1 and "WAL suffix" in res.output
    res = run(main, ["--network", str(path), "vote", "--data-dir", str(tmp_path / "n"), "--propose", "oops"])
    assert res.exit_code == 1 and "NAME=INTEGER" in res.output
    res = run(main, ["--network", "local", "vote", "--data-dir", str(tmp_path / "n"), "--storage-price", "1"])
    assert res.exit_code == 1 and "no genesis" in res.output
