"""`p2pwalrus daemon` with the CLI as processes against a netlab testnet of node processes whose
genesis sets prices: store and read go through the daemon when it runs, paid from the same
account, with the same output and errors; a dead daemon's socket is passed over; one daemon
per client and network."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from p2pwalrus.config import load_network
from p2pwalrus.core.wal.pricing import store_cost
from p2pwalrus.daemon_link import DaemonLink, daemon_socket, network_key

from .test_wal_cli import env_for, fund, ok, one_sentence_error, run

pytestmark = pytest.mark.slow
from .netlab_helpers import running_lab
from .test_wal_pay_cli import STORAGE, WRITE


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp("dmn") / "net", 4, 10, timeout=90, storage_price=STORAGE,
                     write_price=WRITE) as lab:
        yield lab


def start_daemon(lab, client: Path) -> subprocess.Popen:
    """A daemon process for `client`, once it accepts connections on its socket."""
    proc = subprocess.Popen([sys.executable, "-m", "p2pwalrus", "daemon", "--network", str(lab.network_path)],
                            env=env_for(client), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    net = load_network(str(lab.network_path))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        link = DaemonLink.find(net, client)
        if link is not None:
            link.close()
            return proc
        if proc.poll() is not None:
            raise AssertionError(f"the daemon exited: {proc.stderr.read()}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("the daemon did not accept connections within 60 s")


def stop(proc: subprocess.Popen, sig=signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_store_and_read_go_through_the_daemon_paid_from_the_same_account(lab, tmp_path):
    net = lab.network_path
    user = tmp_path / "user"
    fund(lab, ok(run("wallet", "address", client=user, network=net)), "1WAL")
    daemon = start_daemon(lab, user)
    try:
        data = tmp_path / "photo.bin"
        data.write_bytes(os.urandom(700_000))
        res = run("store", str(data), "--epochs", "3", client=user, network=net, timeout=120)
        blob_id = ok(res).splitlines()[-1]
        assert "through the daemon" in res.stderr and "on 10/10 shards" in res.stderr, res.stderr
        cost = store_cost(STORAGE, WRITE, 700_000, 10, 3)
        assert "paid" in res.stderr
        balance = json.loads(ok(run("wallet", "balance", "--json", client=user, network=net)))["balance"]
        assert balance == 10**9 - cost.total  # the client's own account paid, once

        # read through the daemon, and directly: the same bytes
        ok(run("read", blob_id, "-o", str(tmp_path / "via.bin"), client=user, network=net))
        assert (tmp_path / "via.bin").read_bytes() == data.read_bytes()
        direct = subprocess.run([sys.executable, "-m", "p2pwalrus", "read", blob_id, "--network", str(net)],
                                capture_output=True, env=env_for(user) | {"P2PWALRUS_DAEMON": "off"}, timeout=60)
        assert direct.returncode == 0 and direct.stdout == data.read_bytes(), direct.stderr

        # --json of a second store: Walrus's CLI shape, as without the daemon
        again = json.loads(ok(run("store", str(data), "--json", client=user, network=net)))
        assert again == {"alreadyCertified": {"blobId": blob_id, "endEpoch": again["alreadyCertified"]["endEpoch"]}}
        other = tmp_path / "other.bin"
        other.write_bytes(os.urandom(5000))
        made = json.loads(ok(run("store", str(other), "--json", "--deletable", client=user, network=net)))
        obj = made["newlyCreated"]["blobObject"]
        assert set(obj) == {"blobId", "size", "encodingType", "certifiedEpoch", "deletable", "storage"}
        assert obj["size"] == 5000 and obj["deletable"] is True and made["newlyCreated"]["cost"] > 0

        # a blob no node has: one line, exit 1, nothing written
        missing = "A" * 43
        err = one_sentence_error(run("read", missing, "-o", str(tmp_path / "none.bin"), client=user, network=net))
        assert "not" in err.lower()
        assert not (tmp_path / "none.bin").exists()
    finally:
        assert stop(daemon) == 0
    assert not daemon_socket(load_network(str(net)), user).exists()  # removed on the way out


def test_a_dead_daemons_socket_is_passed_over_and_one_daemon_per_client(lab, tmp_path):
    net = lab.network_path
    user = tmp_path / "user"
    first = start_daemon(lab, user)
    try:
        second = subprocess.run([sys.executable, "-m", "p2pwalrus", "daemon", "--network", str(net)],
                                capture_output=True, text=True, env=env_for(user), timeout=60)
        assert second.returncode == 1 and "already serves this network" in second.stderr, second.stderr
    finally:
        stop(first, signal.SIGKILL)  # no clean-up: its socket stays behind
    sock = daemon_socket(load_network(str(net)), user)
    assert sock.exists()

    data = tmp_path / "note.txt"
    data.write_bytes(os.urandom(20_000))
    fund(lab, ok(run("wallet", "address", client=user, network=net)), "1WAL")
    res = run("store", str(data), client=user, network=net, timeout=120)
    blob_id = ok(res).splitlines()[-1]
    assert "through the daemon" not in res.stderr  # went direct
    third = start_daemon(lab, user)  # takes the dead one's socket
    try:
        got = subprocess.run([sys.executable, "-m", "p2pwalrus", "read", blob_id, "--network", str(net)],
                             capture_output=True, env=env_for(user), timeout=60)
        assert got.returncode == 0 and got.stdout == data.read_bytes(), got.stderr
    finally:
        assert stop(third) == 0


def test_the_socket_names_one_network():
    from dataclasses import replace

    net = load_network("local")
    assert network_key(net) == network_key(load_network("local"))
    assert network_key(net) != network_key(replace(net, genesis_time=net.genesis_time + 1))
    assert network_key(net) != network_key(replace(net, n_shards=net.n_shards + 1))
