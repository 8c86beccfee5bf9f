"""What a newcomer meets first (issue 18): refusals that are one sentence, not a traceback,
output that can be copied, and help for every option. Mostly the CLIs run as subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import pytest
import trio

from netlab.inprocess import inprocess_network
from netlab.inprocess import test_network as make_network  # (not collected as a test)
from netlab.lab import Lab
from p2pwalrus.core.blob_id import blob_id_to_str
from p2pwalrus.node.datadir_lock import DataDirInUseError, lock_data_dir
from p2pwalrus.node.service import StorageNode

REPO = Path(__file__).resolve().parents[1]
NETWORK = """name = "usability"
n_shards = 10
epoch_length = 3600.0
genesis_time = 1767225600.0
bootstrap = [{bootstrap}]
"""
# A peer that is not there: a command that got as far as the network would fail otherwise.
NOWHERE = '"/ip4/127.0.0.1/tcp/9/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"'


def env() -> dict:
    paths = [str(REPO), os.environ.get("PYTHONPATH")]
    e = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "P2PWALRUS_NETWORK")}
    return {**e, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def cli(*args: str, module: str = "p2pwalrus", timeout: float = 60, env_extra: dict | None = None,
        **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env={**env(), **(env_extra or {})}, timeout=timeout, **kw)


def netlab(*args: str, **kw) -> subprocess.CompletedProcess:
    return cli(*args, module="netlab.cli", **kw)


def one_sentence_error(res: subprocess.CompletedProcess) -> str:
    """The command failed with exit code 1 and a single `error: ...` line, no traceback."""
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


# --- --network -----------------------------------------------------------------------


@pytest.mark.parametrize("content, expected", [
    (bytes(range(256)), "is not a TOML text file (byte 128 is not UTF-8)"),
    (b"name = [", "not valid TOML"),
    (b'name = "x"\nepoch_length = 1.0\n', "missing 'n_shards'"),
    (b'name = "x"\nn_shards = "ten"\nepoch_length = 1.0\n', "'n_shards' must be int, got 'ten'"),
    (b'name = "x"\nn_shards = 10\nepoch_length = 1.0\nbootstrap = "nope"\n', "'bootstrap' must be a list"),
    (b'name = "x"\nn_shards = 2\nepoch_length = 1.0\n', "n_shards must be between 4 and 65535"),
], ids=["binary", "not-toml", "missing-key", "wrong-type", "bootstrap-type", "n-shards-range"])
def test_a_bad_network_file_is_one_sentence(tmp_path, content, expected):
    net = tmp_path / "net.toml"
    net.write_bytes(content)
    (tmp_path / "f").write_bytes(b"x")
    line = one_sentence_error(cli("--network", str(net), "blob-id", str(tmp_path / "f")))
    assert str(net) in line and expected in line
    assert line.endswith("pass --network a network name or the network.toml that `netlab up` wrote")


def test_a_missing_network_file_or_file_to_store_says_what_to_do(tmp_path):
    missing = tmp_path / "nowhere.toml"
    line = one_sentence_error(cli("--network", str(missing), "blob-id", str(tmp_path / "f")))
    assert line == (f"error: network file {missing} does not exist; "
                    "pass --network a network name or the network.toml that `netlab up` wrote")
    line = one_sentence_error(cli("--network", str(_unreachable_network(tmp_path)), "store", str(tmp_path / "f")))
    assert line == f"error: {tmp_path / 'f'}: no such file; check the path, or pass - to store standard input"


def test_a_directory_as_network_file_is_one_sentence_and_points_to_network_toml(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    plain = tmp_path / "plain"
    plain.mkdir()
    line = one_sentence_error(cli("--network", str(plain), "blob-id", str(tmp_path / "f")))
    assert line == f"error: network file {plain} is a directory; pass a network .toml file"
    # A netlab dir, named relative to the working directory (no "/": it used to be taken for
    # a network name and reported as an unknown network).
    Lab.create(tmp_path / "run1", 1, 4)
    line = one_sentence_error(cli("--network", "run1", "blob-id", str(tmp_path / "f"), cwd=tmp_path))
    assert line.endswith("is a directory; pass a network .toml file: did you mean run1/network.toml?")
    # A directory named like a shipped network does not hide the network.
    (tmp_path / "local").mkdir()
    res = cli("--network", "local", "blob-id", str(tmp_path / "f"), cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.strip(), res.stderr


# --- read -o -------------------------------------------------------------------------


def _unreachable_network(tmp_path: Path) -> Path:
    net = tmp_path / "net.toml"
    net.write_text(NETWORK.format(bootstrap=NOWHERE))
    return net


WRITABLE = "; pass -o a path in a directory you can write"  # what to do, after what went wrong


def test_read_into_a_missing_directory_fails_before_downloading(tmp_path):
    net = _unreachable_network(tmp_path)
    out = tmp_path / "no-such-dir" / "copy"
    t0 = time.monotonic()
    line = one_sentence_error(cli("--network", str(net), "read", blob_id_to_str(bytes(32)), "-o", str(out)))
    assert line == f"error: cannot write {out}: {out.parent} does not exist (create it first){WRITABLE}"
    assert time.monotonic() - t0 < 30  # no dial to the bootstrap peer that is not there
    parent_is_file = tmp_path / "a-file"
    parent_is_file.write_text("")
    line = one_sentence_error(cli("--network", str(net), "read", blob_id_to_str(bytes(32)), "-o",
                                  str(parent_is_file / "copy")))
    assert line == f"error: cannot write {parent_is_file / 'copy'}: {parent_is_file} is not a directory{WRITABLE}"


def _unwritable_dir(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        d = tmp_path / "read-only"
        d.mkdir()
        d.chmod(0o500)
        return d
    # root writes through permission bits; sysfs refuses new files even to root.
    try:
        tempfile.mkstemp(dir="/sys")
    except OSError:
        return Path("/sys")
    pytest.skip("running as root with no directory that refuses new files")


def test_read_into_an_unwritable_directory_fails_before_downloading(tmp_path):
    net = _unreachable_network(tmp_path)
    out = _unwritable_dir(tmp_path) / "copy"
    line = one_sentence_error(cli("--network", str(net), "read", blob_id_to_str(bytes(32)), "-o", str(out)))
    assert line == f"error: cannot write {out}: Permission denied{WRITABLE}"


# --- directories that cannot hold what they are for --------------------------------


def _unmakeable_dir() -> Path:
    """A directory that cannot be created, even by root (sysfs refuses new entries)."""
    try:
        os.mkdir("/sys/p2pwalrus-test")
    except OSError:
        return Path("/sys/p2pwalrus-test")
    os.rmdir("/sys/p2pwalrus-test")
    pytest.skip("no directory here that refuses to be created")


def test_a_client_key_dir_that_is_a_file_or_holds_a_directory_is_one_sentence(tmp_path):
    net = _unreachable_network(tmp_path)
    blob = blob_id_to_str(bytes(32))
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    line = one_sentence_error(cli("--network", str(net), "blob-status", blob,
                                  env_extra={"P2PWALRUS_CLIENT_DIR": str(a_file)}))
    assert line == (f"error: {a_file} is a file, not a directory; name a directory for the identity key "
                    "(the client's key; set by P2PWALRUS_CLIENT_DIR)")
    odd = tmp_path / "odd"
    (odd / "identity.key").mkdir(parents=True)
    line = one_sentence_error(cli("--network", str(net), "blob-status", blob,
                                  env_extra={"P2PWALRUS_CLIENT_DIR": str(odd)}))
    assert line.startswith(f"error: cannot read {odd / 'identity.key'}: ") and "P2PWALRUS_CLIENT_DIR" in line


def test_a_node_data_dir_or_netlab_dir_that_cannot_be_made_is_one_sentence(tmp_path):
    net = _unreachable_network(tmp_path)
    bad = _unmakeable_dir()
    line = one_sentence_error(cli("--network", str(net), "node", "--data-dir", str(bad)))
    assert line.startswith(f"error: cannot create the data dir {bad}: ") and line.endswith(
        "pass --data-dir a directory you can write")
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    line = one_sentence_error(netlab("up", "--nodes", "2", "--shards", "4", "--dir", str(a_file / "run1")))
    assert line == f"error: {a_file / 'run1'}: Not a directory; pass --dir a directory you can write"


# --- one node per data dir -----------------------------------------------------------


def test_a_second_node_process_on_a_data_dir_is_refused_naming_the_first(tmp_path):
    net = tmp_path / "net.toml"
    net.write_text(NETWORK.format(bootstrap=""))
    data = tmp_path / "node"
    log = tmp_path / "first.log"
    with open(log, "w") as fh:
        first = subprocess.Popen([sys.executable, "-m", "p2pwalrus", "--network", str(net), "node", "--data-dir",
                                  str(data)], stdout=fh, stderr=subprocess.STDOUT, env=env())
    try:
        deadline = time.monotonic() + 60
        while not (data / "node.json").exists():  # written once the node listens
            assert first.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the first node did not start"
            time.sleep(0.1)
        assert (data / "lock").read_text().strip() == str(first.pid)
        line = one_sentence_error(cli("--network", str(net), "node", "--data-dir", str(data)))
        assert line == (f"error: data dir {data} is in use by another node (pid {first.pid}); "
                        f"stop it or use another --data-dir")
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(30)
    # The lock dies with its holder: a node starts there again.
    lock_data_dir(data).release()


def test_a_data_dir_is_held_until_the_node_is_closed(tmp_path):
    net = make_network(10)
    node = StorageNode(net, tmp_path)
    with pytest.raises(DataDirInUseError, match=rf"in use by another node \(pid {os.getpid()}\)"):
        StorageNode(net, tmp_path)
    node.close()
    node.close()  # idempotent
    again = StorageNode(net, tmp_path)
    assert again.peer_id == node.peer_id
    again.close()


async def test_an_in_process_kill_releases_the_data_dir_and_a_restart_reuses_it(tmp_path):
    with trio.fail_after(90):
        async with inprocess_network(2, 4, tmp_path) as cluster:
            slot = cluster.slots[1]
            peer = slot.node.peer_id
            with pytest.raises(DataDirInUseError):
                lock_data_dir(slot.data_dir)
            await cluster.kill(1)  # cancels the node's task
            lock_data_dir(slot.data_dir).release()
            node = await cluster.start(1)
            assert node.peer_id == peer and node.data_dir_lock.held


# --- netlab up into an existing testnet ----------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_netlab_up_refuses_an_existing_testnet_and_start_or_fresh_do_what_it_says(tmp_path):
    d = tmp_path / "run1"
    lab = Lab.create(d, 2, 4)
    peers = [n.peer_id for n in lab.nodes]
    try:
        line = one_sentence_error(netlab("up", "--dir", str(d), "--nodes", "2", "--shards", "4"))
        assert "already holds a stopped testnet of 2 node(s)" in line
        assert f"`netlab start INDEX --dir {d}`" in line and "(0..1)" in line
        assert f"`netlab up --fresh --dir {d}`" in line
        assert [n.peer_id for n in Lab.open(d).nodes] == peers  # nothing was deleted
        # What the message says restarts the testnet as it was.
        assert netlab("start", "0", "--dir", str(d)).returncode == 0
        res = netlab("start", "1", "--dir", str(d), "--wait", timeout=90)
        assert res.returncode == 0 and "converged" in res.stdout, res.stderr
        assert [n.peer_id for n in Lab.open(d).nodes] == peers
        line = one_sentence_error(netlab("up", "--fresh", "--dir", str(d), "--nodes", "1", "--shards", "4"))
        assert "already running" in line and f"netlab down --dir {d}" in line
        assert netlab("down", "--dir", str(d)).returncode == 0
        res = netlab("up", "--fresh", "--dir", str(d), "--nodes", "1", "--shards", "4", timeout=120)
        assert res.returncode == 0, res.stderr
        fresh = Lab.open(d)
        assert len(fresh.nodes) == 1 and fresh.nodes[0].peer_id not in peers
    finally:
        netlab("down", "--dir", str(d))


# --- output meant to be copied -------------------------------------------------------


def test_piped_netlab_output_never_wraps_a_long_path(tmp_path):
    d = tmp_path / ("d" * 70) / ("e" * 70)
    Lab.create(d, 1, 4)  # a testnet that was never started: status reads its files only
    res = netlab("status", "--dir", str(d))
    assert res.returncode == 0, res.stderr
    assert any(str(d) in line for line in res.stdout.splitlines()), res.stdout
    line = one_sentence_error(netlab("up", "--dir", str(d), "--nodes", "1", "--shards", "4"))
    assert f"`netlab up --fresh --dir {d}`" in line


# --- help ----------------------------------------------------------------------------


def _commands(cmd: click.Command, path: tuple[str, ...]):
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            yield from _commands(sub, (*path, name))


def test_every_option_of_both_clis_has_help_that_shows_its_default():
    from netlab.cli import main as netlab_main
    from p2pwalrus.cli import main as p2pwalrus_main

    missing, hidden_default = [], []
    for root, name in ((p2pwalrus_main, "p2pwalrus"), (netlab_main, "netlab")):
        for path, cmd in _commands(root, (name,)):
            for opt in (p for p in cmd.params if isinstance(p, click.Option)):
                where = f"{' '.join(path)} {'/'.join(opt.opts + opt.secondary_opts)}"
                if not (opt.help or "").strip():
                    missing.append(where)
                # A plain flag is off unless given; anything else with a default says what it is.
                has_default = opt.default is not None and opt.default is not click.core.UNSET
                plain_flag = opt.is_flag and not opt.secondary_opts and not opt.default
                if has_default and not plain_flag and not opt.count and not opt.is_eager:
                    if not (opt.show_default or "default" in (opt.help or "").lower()):
                        hidden_default.append(where)
    assert not missing, f"options without help: {missing}"
    assert not hidden_default, f"options whose help hides their default: {hidden_default}"


def test_delete_help_says_it_does_not_ask_without_a_terminal():
    res = cli("delete", "--help")
    assert res.returncode == 0, res.stderr
    text = " ".join(res.stdout.split())
    assert "does not ask and deletes at once" in text and "Without a terminal on standard input" in text


def test_a_blob_id_that_begins_with_a_dash_is_not_taken_for_an_option(tmp_path):
    # base64url blob IDs begin with '-' once in 64; `read $BLOB_ID` must still work.
    net = tmp_path / "net.toml"
    net.write_text(NETWORK.format(bootstrap=NOWHERE))
    dash_id = "-" + "A" * 42
    for args in (["blob-status", dash_id, "--json"], ["read", dash_id, "-o", str(tmp_path / "x")],
                 ["extend", dash_id, "--epochs", "2"], ["delete", "--yes", dash_id]):
        res = cli("--network", str(net), *args, timeout=120)
        assert "No such option" not in res.stderr and "no bootstrap peer answered" in res.stderr, (args, res.stderr)
