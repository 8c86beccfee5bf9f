"""netlab faults on one shared 4-node lab: kill/start, stop/add, wipe, status.

A module of its own so that the shared lab's processes end with it, before the
other netlab tests start theirs (two labs at once on 2 cores made timings flaky).
The `lab` fixture restarts whatever an earlier test left down, and the tests count
nodes relative to the lab they get, so each one runs alone or in any order.
(pytest-timeout counts fixture time: the first test includes bringing the lab up.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from netlab.lab import Lab, pid_alive

from .netlab_helpers import node_json as _node_json

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lab4(tmp_path_factory):
    d = tmp_path_factory.mktemp("netlab") / "net"
    lab = Lab.create(d, 4, 10)
    try:
        lab.up()
        lab.wait_converged(45)
        yield lab
    finally:
        lab.down(timeout=10)


@pytest.fixture
def lab(lab4):
    """The shared lab with every node running and one network formed, whatever the tests
    before this one did (or failed half-way through): each test runs alone or in any order."""
    for n in lab4.nodes:
        if not lab4.alive(n):
            lab4.start(n.index)
    lab4.wait_converged(45)
    return lab4


@pytest.mark.timeout(120)
def test_kill_then_start_keeps_identity(lab):
    total = len(lab.nodes)
    victim = lab.nodes[1]
    pid, peer = victim.pid, victim.peer_id
    lab.kill(1)
    assert not pid_alive(pid)
    lab.wait_converged(30)  # the others drop it from their live sets (member_ttl)
    st = lab.status()
    assert st["nodes_alive"] == total - 1
    for r in st["nodes"]:
        if r["alive"]:
            assert peer not in r["live_peers"] and r["live"] == total - 1
    lab.start(1)
    assert victim.pid != pid
    lab.wait_converged(30)
    assert _node_json(lab, 1)["peer_id"] == peer and _node_json(lab, 1)["pid"] == victim.pid
    assert all(r["live"] == total for r in lab.status()["nodes"])


@pytest.mark.timeout(120)
def test_stop_is_graceful_and_add_joins(lab):
    total = len(lab.nodes)
    n2 = lab.nodes[2]
    pid = n2.pid
    lab.stop(2)
    assert not pid_alive(pid) and n2.state == "stopped"
    assert "node stopped" in Path(n2.log).read_text()  # it ran its shutdown path
    lab.start(2)
    new = lab.add()
    assert new.index == total
    lab.wait_converged(40)
    st = lab.status()
    assert st["nodes_alive"] == total + 1 and all(r["live"] == total + 1 for r in st["nodes"])
    assert new.peer_id in _node_json(lab, 0)["live"]  # an older node lists the newcomer as live


@pytest.mark.timeout(120)
def test_wipe_loses_the_disk_but_keeps_the_identity(lab):
    n3 = lab.nodes[3]
    store = Path(n3.data_dir) / "store"
    marker = store / "netlab-marker"
    store.mkdir(exist_ok=True)
    marker.write_text("old disk")
    pid, peer = n3.pid, n3.peer_id
    lab.wipe(3)
    assert not pid_alive(pid) and n3.pid != pid
    assert not marker.exists()
    assert (Path(n3.data_dir) / "identity.key").exists()
    lab.wait_converged(40)
    assert _node_json(lab, 3)["peer_id"] == peer and _node_json(lab, 3)["pid"] == n3.pid


@pytest.mark.timeout(120)
def test_status_cli_json(lab):
    out = subprocess.run([sys.executable, "-m", "netlab.cli", "status", "--dir", str(lab.dir), "--json"],
                         capture_output=True, text=True, timeout=25, check=True).stdout
    st = json.loads(out)
    assert st["nodes_total"] == len(lab.nodes) and st["nodes_alive"] == len(lab.nodes)
    assert {r["peer_id"] for r in st["nodes"]} == {n.peer_id for n in lab.nodes}
