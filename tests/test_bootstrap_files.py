"""The shipped network files are package data, found by an installed package as in a checkout."""

from __future__ import annotations

import tomllib
from pathlib import Path

import p2pwalrus
from p2pwalrus import config


def test_the_shipped_networks_are_found_inside_the_package():
    package = Path(p2pwalrus.__file__).resolve().parent
    path = config.bootstrap_file("local")
    assert path is not None and package in path.parents
    assert "local" in config.known_networks()
    assert config.resolve_network_path("local") == path
    assert config.load_network("local").name == "local"
    for bad in ("", "../local", ".local", "no-such-network"):
        assert config.bootstrap_file(bad) is None


def test_pyproject_ships_every_bootstrap_file():
    root = Path(__file__).resolve().parent.parent
    project = tomllib.loads((root / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["p2pwalrus"]
    package = Path(p2pwalrus.__file__).resolve().parent
    shipped = {p for pattern in patterns for p in package.glob(pattern)}
    files = set(config.BOOTSTRAP_DIR.glob("*.toml"))
    assert files and files <= shipped
