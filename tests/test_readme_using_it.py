"""The README's "Using it" block runs as written (issue 18): extracted from README.md, its
testnet directory moved to a temporary one, run by bash in a fresh environment where only
the venv's activate script puts the commands on PATH."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def using_it_block() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Using it"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"^```sh\n(.*?)^```", section, flags=re.S | re.M)
    assert len(blocks) == 1, "the README's 'Using it' section should hold one sh block"
    return blocks[0]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_using_it_block_runs_as_written(tmp_path):
    activate = Path(sys.executable).parent / "activate"
    if not activate.is_file():
        pytest.skip("the tests do not run from a venv: no activate script to source")
    block = using_it_block()
    assert "source .venv/bin/activate" in block
    lab = tmp_path / "run1"
    script = block.replace("source .venv/bin/activate", f"source {activate}")
    script = re.sub(r"\brun1\b", str(lab), script)
    # A fresh shell: no venv on PATH, no network chosen, the client key kept in the temp dir;
    # the repository on PYTHONPATH in case the package is not installed in editable mode.
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "P2PWALRUS_NETWORK", "COLUMNS", "LINES")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(str(Path(sys.executable).parent)))
    env["P2PWALRUS_CLIENT_DIR"] = str(tmp_path / "client")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    try:
        res = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=200, stdin=subprocess.DEVNULL)
    finally:
        subprocess.run([sys.executable, "-m", "netlab.cli", "down", "--dir", str(lab)], env=env,
                       capture_output=True, timeout=60)
    assert res.returncode == 0, f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}"
    assert (tmp_path / "copy.jpg").read_bytes() == (tmp_path / "photo.jpg").read_bytes()
    assert '"status": "certified"' in res.stdout
    assert "deleted on" in res.stdout
