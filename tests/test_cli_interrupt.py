"""Ctrl-C (issue 18): every command that talks to the network turns SIGINT into one line
saying what was done, and exit code 130, with no traceback. The CLI runs as a subprocess
against 4 node processes made slow (netlab slow), so that each command is still at work
when the signal comes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOME_ID = "8QEwX__ozJHFxTCA6fikXb8mdI4K8GRTpof99y5WKUI"


@pytest.fixture(scope="module")
def slow_lab(tmp_path_factory):
    base = tmp_path_factory.mktemp("interrupt")
    lab = base / "lab"
    paths = [str(REPO), os.environ.get("PYTHONPATH")]
    e = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    e.update(PYTHONPATH=os.pathsep.join(p for p in paths if p), P2PWALRUS_NETWORK=str(lab / "network.toml"),
             P2PWALRUS_CLIENT_DIR=str(base / "client"))

    def netlab(*args):
        res = subprocess.run([sys.executable, "-m", "netlab.cli", *args, "--dir", str(lab)], env=e,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr

    netlab("up", "--nodes", "4", "--shards", "40")
    try:
        for i in range(4):
            netlab("slow", str(i), "--delay-ms", "20000")
        _wait_for_delay(lab, 20000)
        yield base, e
    finally:
        netlab("down")


def _wait_for_delay(lab: Path, delay_ms: int, timeout: float = 30.0) -> None:
    """Until every node says (in its node.json) that it applies the injected delay."""
    import json

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        views = []
        for status in lab.glob("node*/node.json"):
            try:
                views.append(json.loads(status.read_text()).get("faults", {}).get("delay_ms"))
            except (OSError, ValueError):
                views.append(None)
        if len(views) == 4 and all(v == delay_ms for v in views):
            return
        time.sleep(0.2)
    raise AssertionError(f"the nodes did not apply a {delay_ms} ms delay within {timeout:.0f} s")


def interrupt(e: dict, args: list[str], after: float = 2.0) -> tuple[int, str, str]:
    proc = subprocess.Popen([sys.executable, "-m", "p2pwalrus", *args], env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(after)
    assert proc.poll() is None, "the command ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


@pytest.mark.slow
def test_an_interrupted_store_says_nothing_was_certified_in_one_line(slow_lab):
    base, e = slow_lab
    src = base / "big.bin"
    src.write_bytes(os.urandom(12 << 20))
    for after in (0.3, 2.0):  # while starting, and while uploading
        code, out, err = interrupt(e, ["store", str(src)], after)
        assert (code, out, err) == (130, "", "interrupted; nothing was certified\n")


@pytest.mark.slow
def test_an_interrupted_read_writes_nothing_and_status_says_interrupted(slow_lab):
    base, e = slow_lab
    target = base / "out.bin"
    code, out, err = interrupt(e, ["read", SOME_ID, "-o", str(target)])
    assert (code, out, err) == (130, "", "interrupted; nothing was written\n")
    assert not target.exists() and not list(base.glob(".out.bin.*"))
    code, out, err = interrupt(e, ["blob-status", SOME_ID])
    assert (code, out, err) == (130, "", "interrupted\n")
