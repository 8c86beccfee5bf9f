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


def _python_catches_sigint(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Until the child's interpreter has installed its SIGINT handler (SigCgt in /proc): a
    signal before that kills the process before any Python code runs, however it is written."""
    pid = proc.pid
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the command ended (exit {proc.returncode}) before it could be interrupted: {err}{out}")
        with open(f"/proc/{pid}/status") as fh:
            caught = next(int(line.split()[1], 16) for line in fh if line.startswith("SigCgt:"))
        if caught & (1 << (signal.SIGINT - 1)):
            return
        time.sleep(0.01)
    raise AssertionError("the child's interpreter never installed a SIGINT handler")


def _sigint_as_a_terminal_gives_it() -> None:
    """In the child: SIGINT's default action, whatever the parent had. A shell starts
    background jobs with SIGINT ignored, and a Python that inherits SIG_IGN keeps ignoring it:
    under `.ci/run &` every child was deaf to Ctrl-C, which a user's terminal never is."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt(e: dict, args: list[str], after: float = 2.0) -> tuple[int, str, str]:
    proc = subprocess.Popen([sys.executable, "-m", "p2pwalrus", *args], env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_sigint_as_a_terminal_gives_it)
    _python_catches_sigint(proc)
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
    for after in (0.3, 2.0):  # while loading and starting, and while uploading
        code, out, err = interrupt(e, ["store", str(src)], after)
        assert (code, out) == (130, "") and err in (
            "interrupted; nothing was certified\n", "interrupted while starting; nothing was done\n"), err


@pytest.mark.slow
def test_an_interrupted_read_writes_nothing_and_status_says_interrupted(slow_lab):
    base, e = slow_lab
    target = base / "out.bin"
    code, out, err = interrupt(e, ["read", SOME_ID, "-o", str(target)])
    assert (code, out, err) == (130, "", "interrupted; nothing was written\n")
    assert not target.exists() and not list(base.glob(".out.bin.*"))
    code, out, err = interrupt(e, ["blob-status", SOME_ID])
    assert (code, out, err) == (130, "", "interrupted\n")


# --- the long-running commands: Ctrl-C is their stop, exit 130 all the same --------------

ONE_NODE_NETWORK = """name = "interrupt"
n_shards = 4
epoch_length = 3600.0
genesis_time = 1767225600.0
bootstrap = [{bootstrap}]
"""


def _start(args: list[str], e: dict, log: Path) -> subprocess.Popen:
    with open(log, "w") as fh:
        return subprocess.Popen([sys.executable, "-m", "p2pwalrus", *args], env=e, stdout=fh, stderr=subprocess.STDOUT,
                                preexec_fn=_sigint_as_a_terminal_gives_it)


def _wait_for(proc: subprocess.Popen, ready, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"not ready within {timeout:.0f} s: {log.read_text()}"
        time.sleep(0.1)


def _interrupted(proc: subprocess.Popen, log: Path) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    code = proc.wait(30)
    return code, log.read_text()


def test_ctrl_c_stops_a_node_and_a_gateway_with_exit_130_and_no_traceback(tmp_path):
    import json

    paths = [str(REPO), os.environ.get("PYTHONPATH")]
    e = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "P2PWALRUS_NETWORK")}
    e.update(PYTHONPATH=os.pathsep.join(p for p in paths if p), P2PWALRUS_CLIENT_DIR=str(tmp_path / "client"))
    first = tmp_path / "first.toml"
    first.write_text(ONE_NODE_NETWORK.format(bootstrap=""))
    data, node_log = tmp_path / "node", tmp_path / "node.log"
    node = _start(["--network", str(first), "node", "--data-dir", str(data)], e, node_log)
    try:
        _wait_for(node, lambda: (data / "node.json").exists(), node_log)
        addr = json.loads((data / "node.json").read_text())["addrs"][0]
        net = tmp_path / "net.toml"
        net.write_text(ONE_NODE_NETWORK.format(bootstrap=f'"{addr}"'))
        gw_log = tmp_path / "gateway.log"
        gateway = _start(["--network", str(net), "gateway", "--bind", "127.0.0.1:0"], e, gw_log)
        try:
            _wait_for(gateway, lambda: "dashboard at" in gw_log.read_text(), gw_log)
            code, out = _interrupted(gateway, gw_log)
            assert code == 130 and "Traceback" not in out, out
            assert out.strip().splitlines()[-1] == "gateway stopped", out
        finally:
            if gateway.poll() is None:
                gateway.kill()
        code, out = _interrupted(node, node_log)
        assert code == 130 and "Traceback" not in out, out
        assert out.strip().splitlines()[-1].endswith("node stopped"), out
    finally:
        if node.poll() is None:
            node.kill()
