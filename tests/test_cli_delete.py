"""A stranger's `p2pwalrus delete` (issue 13): the CLI runs as processes, each with its own
client key (P2PWALRUS_CLIENT_DIR), against 4 node processes of a netlab testnet."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_strangers_delete_fails_with_one_sentence_and_the_blob_stays_readable(tmp_path):
    lab = tmp_path / "lab"
    paths = [str(REPO), os.environ.get("PYTHONPATH")]
    base = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    base.update(PYTHONPATH=os.pathsep.join(p for p in paths if p), P2PWALRUS_NETWORK=str(lab / "network.toml"))

    def run(*args, who: str = "owner", module: str = "p2pwalrus") -> subprocess.CompletedProcess:
        env = {**base, "P2PWALRUS_CLIENT_DIR": str(tmp_path / who)}
        return subprocess.run([sys.executable, "-m", module, *args], env=env, capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)

    up = run("up", "--nodes", "4", "--shards", "10", "--dir", str(lab), module="netlab.cli")
    assert up.returncode == 0, up.stderr
    try:
        blob = tmp_path / "notes.txt"
        blob.write_bytes(os.urandom(3000))
        stored = run("store", str(blob), "--deletable")
        assert stored.returncode == 0, stored.stderr
        blob_id = stored.stdout.strip()
        refused = run("delete", blob_id, who="stranger")
        assert refused.returncode == 1, (refused.stdout, refused.stderr)
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), refused.stderr
        assert "only the key that stored this blob" in lines[0] and "P2PWALRUS_CLIENT_DIR" in lines[0]
        assert "Traceback" not in refused.stderr
        copy = tmp_path / "copy.txt"
        read = run("read", blob_id, "-o", str(copy), who="stranger")
        assert read.returncode == 0, read.stderr
        assert copy.read_bytes() == blob.read_bytes()
        # The owner's own delete goes through.
        deleted = run("delete", blob_id)
        assert deleted.returncode == 0 and "deleted on 4 node(s)" in deleted.stdout, deleted.stderr
        assert run("read", blob_id, "-o", str(copy)).returncode == 1
    finally:
        run("down", "--dir", str(lab), module="netlab.cli")
