"""The wallet, stake and faucet commands run as processes against a netlab testnet of node
processes: what a user sees, refusals in one sentence, and WAL conserved at every node."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from netlab.cli import bring_up
from netlab.wal import FAUCET_BALANCE, NODE_STAKE
from p2pwalrus.core.wal.committee import committee_from_genesis
from p2pwalrus.core.wal.ledger import check_conservation
from p2pwalrus.core.wal.orders import Order, OrderKind, sign_order
from p2pwalrus.p2p.identity import load_or_create_identity
from p2pwalrus.node.ledger_store import LedgerStore

from .netlab_helpers import node_json, wait
from p2pwalrus.core import protocols

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
WAL = 10**9


def env_for(client: Path | None = None, network: Path | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "P2PWALRUS_NETWORK")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    if client is not None:
        env["P2PWALRUS_CLIENT_DIR"] = str(client)
    if network is not None:
        env["P2PWALRUS_NETWORK"] = str(network)
    return env


def run(*args: str, client: Path | None = None, network: Path | None = None, module: str = "p2pwalrus",
        timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env=env_for(client, network), timeout=timeout, stdin=subprocess.DEVNULL)


def ok(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 0, (res.stdout, res.stderr)
    return res.stdout.strip()


def one_sentence_error(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    d = tmp_path_factory.mktemp("wal") / "net"
    lab, _ = bring_up(d, 4, 10, timeout=90)
    try:
        yield lab
    finally:
        lab.down()


def wallet(lab, tmp: Path, name: str, *args: str) -> subprocess.CompletedProcess:
    return run(*args, client=tmp / name, network=lab.network_path)


def address(lab, tmp: Path, name: str) -> str:
    return ok(wallet(lab, tmp, name, "wallet", "address"))


def fund(lab, addr: str, amount: str) -> None:
    assert "from the faucet" in ok(run("faucet", addr, amount, "--dir", str(lab.dir), module="netlab.cli"))


@pytest.mark.timeout(180)
def test_faucet_transfer_balance_history_stake_unstake(lab, tmp_path):
    a, b = address(lab, tmp_path, "a"), address(lab, tmp_path, "b")
    fund(lab, a, "10WAL")
    assert ok(wallet(lab, tmp_path, "a", "wallet", "balance")) == f"{a}: 10 WAL"
    assert ok(wallet(lab, tmp_path, "a", "wallet", "transfer", b, "2.5WAL")) == f"sent 2.5 WAL to {b} (sequence 0)"
    assert ok(wallet(lab, tmp_path, "b", "wallet", "balance")) == f"{b}: 2.5 WAL"
    node = lab.nodes[1].peer_id
    assert "staked 1 WAL with" in ok(wallet(lab, tmp_path, "a", "stake", node, "1WAL"))
    assert "unstaked 0.25 WAL" in ok(wallet(lab, tmp_path, "a", "unstake", node, "250000000"))
    balance = ok(wallet(lab, tmp_path, "a", "wallet", "balance")).splitlines()
    assert balance == [f"{a}: 6.75 WAL", f"  staked 0.75 WAL with {node}"]
    history = ok(wallet(lab, tmp_path, "a", "wallet", "history")).splitlines()
    assert len(history) == 4 and "received +10 WAL" in history[-1] and "-2.5 WAL" in history[0]
    assert "received +2.5 WAL" in ok(wallet(lab, tmp_path, "b", "wallet", "history"))


@pytest.mark.timeout(180)
def test_a_named_wallet_is_another_account_with_its_own_key(lab, tmp_path):
    mine = address(lab, tmp_path, "a")
    alice = ok(wallet(lab, tmp_path, "a", "wallet", "--wallet", "alice", "address"))
    assert alice != mine and (tmp_path / "a" / "wallets" / "alice" / "identity.key").is_file()
    fund(lab, alice, "2WAL")
    assert "sent 0.5 WAL" in ok(wallet(lab, tmp_path, "a", "wallet", "--wallet", "alice", "transfer", mine, "0.5WAL"))
    assert ok(wallet(lab, tmp_path, "a", "wallet", "--wallet", "alice", "balance")) == f"{alice}: 1.5 WAL"
    assert ok(wallet(lab, tmp_path, "a", "wallet", "balance")) == f"{mine}: 0.5 WAL"


@pytest.mark.timeout(180)
def test_wallet_refusals_are_one_sentence(lab, tmp_path):
    a, c = address(lab, tmp_path, "a"), address(lab, tmp_path, "c")
    fund(lab, a, "1WAL")
    err = one_sentence_error(wallet(lab, tmp_path, "a", "wallet", "transfer", c, "2WAL"))
    assert "insufficient balance" in err and "has 1 WAL" in err and "needs 2 WAL" in err
    err = one_sentence_error(wallet(lab, tmp_path, "c", "wallet", "transfer", a, "1WAL"))
    assert f"unknown account {c}" in err and "netlab faucet" in err
    err = one_sentence_error(wallet(lab, tmp_path, "a", "wallet", "transfer", c, "1.5"))
    assert "WAL suffix" in err
    err = one_sentence_error(wallet(lab, tmp_path, "a", "wallet", "transfer", "bob", "1WAL"))
    assert "not an account address" in err
    err = one_sentence_error(wallet(lab, tmp_path, "a", "unstake", lab.nodes[0].peer_id, "1WAL"))
    assert "insufficient stake" in err
    err = one_sentence_error(run("wallet", "balance", client=tmp_path / "a", network="local"))
    assert "has no genesis" in err


@pytest.mark.timeout(180)
def test_a_second_order_at_a_used_sequence_says_the_account_may_be_locked(lab, tmp_path):
    from p2pwalrus.client.client import open_client
    from p2pwalrus.client.wallet import Wallet

    d, e = address(lab, tmp_path, "d"), address(lab, tmp_path, "e")
    fund(lab, d, "5WAL")
    key = load_or_create_identity(tmp_path / "d")

    async def sign_elsewhere():  # the same key signs another order, shown to every node, never certified
        async with open_client(lab.client_network(), key) as client:
            await client.refresh_membership()
            w = Wallet(client, key, tmp_path / "elsewhere")
            other = sign_order(key, Order(w.genesis_hash, 0, d, 0, e, WAL, OrderKind.TRANSFER))
            answers, _ = await w._ask_all(protocols.LEDGER_SIGN, {"signed": other.to_json()})
            assert all(a.get("ok") for a in answers.values()) and len(answers) == 4

    trio.run(sign_elsewhere)
    err = one_sentence_error(wallet(lab, tmp_path, "d", "wallet", "transfer", e, "2WAL"))
    assert "sequence 0" in err and "already used" in err and "may be locked" in err


def slow_all(lab, delay_ms: int) -> None:
    for n in lab.nodes:
        lab.slow(n.index, delay_ms)
    wait(lambda: all(node_json(lab, n.index)["faults"]["delay_ms"] == delay_ms for n in lab.nodes), 30,
         f"every node to apply a {delay_ms} ms delay")


@pytest.mark.timeout(240)
def test_an_order_saved_before_a_crash_is_sent_again_by_the_next_command(lab, tmp_path):
    a, b = address(lab, tmp_path, "a"), address(lab, tmp_path, "b")
    fund(lab, a, "5WAL")
    slow_all(lab, 4000)  # every answer takes 4 s: time to kill the client while its order is out
    try:
        proc = subprocess.Popen([sys.executable, "-m", "p2pwalrus", "wallet", "transfer", b, "1WAL"],
                                env=env_for(tmp_path / "a", lab.network_path), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait(lambda: list((tmp_path / "a" / "wallet").glob("*/000000000000.json")), 60, "the order saved")
        finally:
            proc.kill()
            proc.wait(timeout=30)
        saved = json.loads(next((tmp_path / "a" / "wallet").glob("*/000000000000.json")).read_text())
        assert saved["state"] == "sent"  # killed with the order out, before its certificate
    finally:
        slow_all(lab, 0)
    # The next command first finishes the saved order (sequence 0), then sends its own.
    assert "(sequence 1)" in ok(wallet(lab, tmp_path, "a", "wallet", "transfer", b, "2WAL"))
    assert ok(wallet(lab, tmp_path, "b", "wallet", "balance")) == f"{b}: 3 WAL"
    assert ok(wallet(lab, tmp_path, "a", "wallet", "balance")) == f"{a}: 2 WAL"


@pytest.mark.timeout(240)
def test_no_quorum_names_who_answered_then_wal_is_conserved_at_every_node(lab, tmp_path):
    a, b = address(lab, tmp_path, "a"), address(lab, tmp_path, "b")
    fund(lab, a, "3WAL")
    lab.kill(3)
    lab.wait_converged(60)
    ok(wallet(lab, tmp_path, "a", "wallet", "transfer", b, "0.5WAL"))  # node 3 misses this one
    lab.kill(2)
    lab.wait_converged(60)
    err = one_sentence_error(wallet(lab, tmp_path, "a", "wallet", "transfer", b, "1WAL"))
    assert "no quorum reachable" in err and "needs 7" in err
    for i in (0, 1):
        assert lab.nodes[i].peer_id in err.split("signed by")[1].split(";")[0]
    for i in (2, 3):
        assert lab.nodes[i].peer_id in err.split("no answer from")[1]
    for i in (2, 3):
        lab.start(i)
    lab.wait_converged(60)
    # The saved order goes out again with the next command, then the new one.
    assert "(sequence 2)" in ok(wallet(lab, tmp_path, "a", "wallet", "transfer", b, "1WAL"))
    assert ok(wallet(lab, tmp_path, "b", "wallet", "balance")) == f"{b}: 2.5 WAL"
    genesis = lab.base_network().genesis
    assert genesis.supply() == 4 * NODE_STAKE + FAUCET_BALANCE
    committee = committee_from_genesis(genesis)
    stores = [LedgerStore(Path(n.data_dir) / "ledger", genesis) for n in lab.nodes]

    def states():
        return [s.load_state() for s in stores]

    def agree() -> bool:  # the restarted nodes pull what they missed: every node ends with one state
        views = [{k: (x.balance, x.next_sequence) for k, x in led.accounts.items()} for led in states()]
        return all(v == views[0] for v in views)

    wait(agree, 60, "every node to hold the same balances")
    for ledger in states():
        check_conservation(ledger)
    status = lab.status()  # what `netlab status --json` shows: each node's WAL against the supply
    assert status["wal_conserved"] and all(r["ledger"]["supply"] == genesis.supply() for r in status["nodes"])
    assert committee.n_shards == 10
