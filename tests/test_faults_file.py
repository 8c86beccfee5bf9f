"""DATA_DIR/faults.json, defined once (p2pwalrus/core/faults.py): netlab writes it, nodes read it."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from p2pwalrus.core import faults


def test_round_trip_and_defaults():
    assert faults.parse(b"{}") == faults.NONE == faults.Faults()
    f = faults.Faults(deny={"b", "a"}, delay_ms=250, corrupt_slivers=True, updated=12.5)
    obj = f.to_json()
    assert obj == {"deny": ["a", "b"], "delay_ms": 250, "corrupt_slivers": True, "updated": 12.5}
    assert faults.parse(json.dumps(obj).encode()) == f
    assert faults.parse(obj) == f
    assert f.delay == 0.25 and "a" in f.deny
    healed = replace(f, deny=[])
    assert healed.deny == frozenset() and healed.delay_ms == 250
    assert "updated" not in faults.NONE.to_json()


def test_unknown_keys_are_ignored():
    assert faults.parse({"deny": ["x"], "future": 1}) == faults.Faults(deny={"x"})


@pytest.mark.parametrize("raw", [
    b"not json", b"[]", b'"deny"', {"deny": "peer"}, {"deny": [1]}, {"delay_ms": -1}, {"delay_ms": 60_001},
    {"delay_ms": "5"}, {"delay_ms": True}, {"delay_ms": float("nan")}, {"corrupt_slivers": 1},
    {"updated": "now"}, b"\xff\xfe",
])
def test_bad_files_are_refused_with_a_reason(raw):
    with pytest.raises(ValueError):
        faults.parse(raw)


def test_netlab_writes_what_nodes_parse(tmp_path):
    from netlab.lab import FAULTS_FILE, Lab

    assert FAULTS_FILE == faults.FILE_NAME
    lab = Lab(tmp_path)

    class Entry:
        data_dir = str(tmp_path)

    n = Entry()
    assert lab.faults_of(n) == faults.NONE
    lab.set_faults(n, replace(lab.faults_of(n), deny=frozenset({"p2", "p1"})))
    lab.set_faults(n, replace(lab.faults_of(n), delay_ms=40))
    written = faults.parse((tmp_path / FAULTS_FILE).read_bytes())
    assert written.deny == {"p1", "p2"} and written.delay_ms == 40 and written.updated is not None
    assert json.loads((tmp_path / FAULTS_FILE).read_text())["deny"] == ["p1", "p2"]
