"""The ledger on disk survives crashes (SIGKILL at random moments) and the genesis survives
the network file."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from p2pwalrus.config import NetworkConfig, network_to_toml, parse_network
from p2pwalrus.core.wal.committee import committee_from_genesis
from p2pwalrus.core.wal.ledger import check_conservation
from p2pwalrus.errors import NetworkConfigError, StorageError
from p2pwalrus.node.ledger_store import LedgerStore

from .wal_helpers import address, genesis_for, key, order, votes

REPO = Path(__file__).resolve().parents[1]
NODES = [key(i) for i in range(1, 5)]
USERS = [key(i) for i in range(300, 303)]
G = genesis_for(NODES, USERS, balance=10**12)
COMMITTEE = committee_from_genesis(G)


def _cert(sender_index: int, seq: int):
    from p2pwalrus.core.wal.orders import make_certificate

    signed = order(G, USERS[sender_index], seq, address(USERS[(sender_index + 1) % 3]), 1000 + seq)
    return make_certificate(signed, votes(signed, NODES))


def child(root: str) -> None:
    """Apply certificates forever, each as the node does: certificate file, then state; a
    line on stdout after each."""
    store = LedgerStore(Path(root), G)
    ledger, _, _ = store.load(lambda e: COMMITTEE)
    while True:
        sender = random.randrange(3)
        acct = ledger.account(address(USERS[sender]))
        cert = _cert(sender, acct.next_sequence)
        store.put_certificate(cert)
        ledger.apply(cert, COMMITTEE)
        store.save_state(store.state_bytes(ledger))
        print(sum(a.next_sequence for a in ledger.accounts.values()), flush=True)


@pytest.mark.timeout(120)
def test_account_state_survives_sigkill_at_random_moments(tmp_path):
    rng = random.Random(7)
    root = tmp_path / "ledger"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    acknowledged = 0
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", f"from tests.test_wal_store import child; child({str(root)!r})"],
                                stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(rng.randrange(1, 15)):  # wait for some applied certificates, then kill mid-way
            line = proc.stdout.readline()
            assert line, "the child process ended by itself"
            acknowledged = int(line)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        store = LedgerStore(root, G)
        ledger, certs, replayed = store.load(lambda e: COMMITTEE)
        check_conservation(ledger)
        applied = sum(a.next_sequence for a in ledger.accounts.values())
        assert applied >= acknowledged  # nothing acknowledged is lost
        assert applied == len(certs)  # every certificate on disk is applied, at most one again
        assert replayed <= 1


def test_a_certificate_written_before_a_crash_is_applied_at_restart(tmp_path):
    store = LedgerStore(tmp_path, G)
    ledger, _, _ = store.load(lambda e: COMMITTEE)
    store.put_certificate(_cert(0, 0))  # the crash: the state that applies it was never written
    ledger, certs, replayed = LedgerStore(tmp_path, G).load(lambda e: COMMITTEE)
    assert replayed == 1 and ledger.account(address(USERS[0])).next_sequence == 1
    ledger, _, replayed = LedgerStore(tmp_path, G).load(lambda e: COMMITTEE)
    assert replayed == 0 and ledger.account(address(USERS[0])).next_sequence == 1
    check_conservation(ledger)


def test_a_damaged_state_file_stops_the_node_instead_of_forgetting_its_votes(tmp_path):
    store = LedgerStore(tmp_path, G)
    ledger, _, _ = store.load(lambda e: COMMITTEE)
    ledger.handle_order(order(G, USERS[0], 0, address(USERS[1]), 5), COMMITTEE)
    store.save_state(store.state_bytes(ledger))
    raw = store.state_path.read_bytes()
    store.state_path.write_bytes(raw.replace(b'"balance"', b'"balancf"') if b'"balance"' in raw else raw[:-5])
    with pytest.raises(StorageError, match="damaged"):
        LedgerStore(tmp_path, G).load_state()
    store.state_path.write_bytes(raw.replace(b"1000000000000", b"1000000000001", 1))
    with pytest.raises(StorageError, match="checksum"):
        LedgerStore(tmp_path, G).load_state()


def test_certificate_paths_never_leave_the_ledger_directory(tmp_path):
    store = LedgerStore(tmp_path, G)
    assert store.get_certificate("../../etc", 0) is None
    assert store.get_certificate("12D3KooW/..", 0) is None


# --- genesis in the network file ---------------------------------------------------------


def _net() -> NetworkConfig:
    return replace(NetworkConfig(name=G.network, n_shards=G.n_shards, epoch_length=G.epoch_length,
                                 genesis_time=G.genesis_time, bootstrap=("/ip4/127.0.0.1/tcp/1/p2p/x",)), genesis=G)


def test_genesis_round_trips_through_the_network_file_with_its_hash():
    net = _net()
    again = parse_network(network_to_toml(net))
    assert again.genesis == G and again.genesis.hash() == G.hash()
    moved = parse_network(network_to_toml(again.with_bootstrap(["/ip4/127.0.0.1/tcp/2/p2p/y"])))
    assert moved.genesis.hash() == G.hash()  # bootstrap addresses are not part of genesis


def test_genesis_amounts_may_be_written_in_wal():
    text = network_to_toml(_net()).replace(f"balance = {10**12}", 'balance = "1000WAL"')
    assert parse_network(text).genesis.hash() == G.hash()


@pytest.mark.parametrize("bad,match", [('peer_id = "12D3', "not an Ed25519 peer ID"),
                                       ("balance = 1", "unknown \\[genesis\\] keys")])
def test_a_bad_genesis_is_one_sentence_naming_the_problem(bad, match):
    text = network_to_toml(_net())
    if bad.startswith("peer_id"):
        text = text.replace('peer_id = "12D3', 'peer_id = "x12D3', 1)
    else:
        text = text.replace("[genesis]\n", "[genesis]\nbalance = 1\n", 1)
    with pytest.raises(NetworkConfigError, match=match):
        parse_network(text)


def test_the_shipped_local_network_has_no_ledger():
    from p2pwalrus.config import load_network

    assert load_network("local").genesis is None
