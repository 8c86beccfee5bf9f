"""`p2pwalrus store-quilt`, `read-quilt` and `publish` as processes, against an in-process testnet."""

from __future__ import annotations

import os
import sys

import trio

from netlab.inprocess import inprocess_network
from p2pwalrus.config import network_to_toml
from p2pwalrus.core import quilt as q
from p2pwalrus.core.blob_id import parse_blob_id
from tests.test_cli_usability import NETWORK, NOWHERE, env


async def cli(tmp_path, net_file, *args: str, check: bool = True) -> trio.Process:
    with trio.fail_after(90):
        done = await trio.run_process(
            [sys.executable, "-m", "p2pwalrus", "--network", str(net_file), *args], capture_stdout=True,
            capture_stderr=True, check=False, env={**env(), "P2PWALRUS_CLIENT_DIR": str(tmp_path / "key")})
    if check:
        assert done.returncode == 0, (args, done.stderr.decode())
    return done


async def test_store_quilt_prints_the_quilt_and_patch_ids_and_read_quilt_reads_one_file(tmp_path):
    files = {"a.txt": b"alpha\n" * 100, "b.bin": os.urandom(3000), "c.html": b"<p>c</p>"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "index.html").write_bytes(b"<a href='sub/x.txt'>x</a>")
    (tree / "sub" / "x.txt").write_bytes(b"x" * 5000)
    with trio.fail_after(240):
        async with inprocess_network(4, 10, tmp_path / "net") as cluster:
            net_file = tmp_path / "network.toml"
            net_file.write_text(network_to_toml(cluster.net))
            done = await cli(tmp_path, net_file, "store-quilt", *(str(tmp_path / n) for n in files), "--epochs", "2")
            lines = done.stdout.decode().splitlines()
            quilt_id = lines[0]
            patches = dict(line.split("\t") for line in lines[1:])
            assert set(patches) == set(files)
            for name, pid in patches.items():
                assert q.QuiltPatchId.parse(pid).quilt_id == parse_blob_id(quilt_id)
            out = tmp_path / "out.bin"
            await cli(tmp_path, net_file, "read-quilt", quilt_id, "b.bin", "-o", str(out))
            assert out.read_bytes() == files["b.bin"]
            done = await cli(tmp_path, net_file, "read-quilt", patches["a.txt"])
            assert done.stdout == files["a.txt"]
            done = await cli(tmp_path, net_file, "list-quilt", quilt_id)
            listed = [line.split("\t") for line in done.stdout.decode().splitlines()]
            assert {row[0]: row[1] for row in listed} == patches and all(row[2].startswith("columns ") for row in listed)
            done = await cli(tmp_path, net_file, "read-quilt", quilt_id, "missing.txt", check=False)
            assert done.returncode == 1 and b"no patch named 'missing.txt'" in done.stderr
            assert b"Traceback" not in done.stderr

            done = await cli(tmp_path, net_file, "store-quilt", "--dir", str(tree))
            lines = done.stdout.decode().splitlines()
            assert {line.split("\t")[0] for line in lines[1:]} == {"index.html", "sub/x.txt"}
            done = await cli(tmp_path, net_file, "read-quilt", lines[0], "sub/x.txt")
            assert done.stdout == b"x" * 5000

            done = await cli(tmp_path, net_file, "publish", str(tree))
            site_id = done.stdout.decode().strip()
            assert len(site_id) == 43 and b"published 2 files" in done.stderr
            again = await cli(tmp_path, net_file, "publish", str(tree), "--json")
            assert f'"siteId": "{site_id}"'.encode() in again.stdout and b'"stored": 0' in again.stdout


async def test_quilt_commands_refuse_what_cannot_work_in_one_sentence(tmp_path):
    net_file = tmp_path / "net.toml"
    net_file.write_text(NETWORK.format(bootstrap=NOWHERE))
    many = []
    for i in range(q.max_patches(10) + 1):
        (tmp_path / f"f{i}").write_bytes(b"x")
        many.append(str(tmp_path / f"f{i}"))
    for args, says in ((["store-quilt", *many], "do not fit one quilt: at most 6"),
                       (["store-quilt"], "pass either FILES or --dir DIR"),
                       (["store-quilt", str(tmp_path / "nope")], "no such file"),
                       (["read-quilt", "abc"], "is not a quilt patch ID"),
                       (["read-quilt", "A" * 43], "is a quilt ID: pass the IDENTIFIER"),
                       (["publish", str(tmp_path / "nope")], "is not a directory")):
        done = await cli(tmp_path, net_file, *args, check=False)
        err = done.stderr.decode().strip().splitlines()
        assert done.returncode == 1 and len(err) == 1 and err[0].startswith("error: ") and says in err[0], (args, err)
    dash_patch = str(q.QuiltPatchId(bytes([0xF8]) + bytes(31), 1, 2))  # patch IDs, too, may begin with '-'
    assert dash_patch.startswith("-")
    done = await cli(tmp_path, net_file, "read-quilt", dash_patch, "-o", str(tmp_path / "o"), check=False)
    assert b"No such option" not in done.stderr and b"no bootstrap peer answered" in done.stderr, done.stderr
