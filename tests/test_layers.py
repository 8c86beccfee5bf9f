"""The package's layers (issue 11): no import runs upward and none crosses sideways.

core/      pure: encoding, messages, placement, certificates, WAL rules (no I/O, no libp2p)
errors.py, config.py, durable.py: leaf modules every layer may use (asgi_serve.py: HTTP
           serving for the node's metrics and the gateway)
p2p/       the libp2p floor: host, identity, framing, calls, patches
client/    stands on core, config, errors and p2p
node/      stands on core, config, errors and p2p (never on client/, gateway/ or the CLI)
gateway/, cli*.py, netlab/: the faces, on top

Checked on the source with ``ast`` (imports inside functions included), so a lazy import
cannot hide an upward arrow. Private names (a leading underscore) are not imported from
another package of the project.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "p2pwalrus"

# package -> the project packages it may import from (besides itself)
ALLOWED = {
    "core": {"core", "errors"},
    "p2p": {"core", "errors", "config", "durable", "p2p"},
    "client": {"core", "errors", "config", "durable", "p2p", "client"},
    "node": {"core", "errors", "config", "durable", "asgi_serve", "p2p", "node", "__init__"},
}


def _package_of(module: str) -> str:
    """'p2pwalrus.core.rs2' -> 'core'; 'p2pwalrus.errors' -> 'errors'; 'p2pwalrus' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(absolute module, names imported, line) for every import in ``path``."""
    rel = path.relative_to(REPO).with_suffix("")
    here = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [a.name for a in node.names]
            if not node.module:  # from . import x, y: each name is a module
                out += [(f"{module}.{n}", [], node.lineno) for n in names]
            else:
                out.append((module, names, node.lineno))
    return [(m, n, line) for m, n, line in out if m.split(".")[0] in ("p2pwalrus", "netlab")]


def _violations() -> list[str]:
    bad = []
    for path in sorted([*PKG.rglob("*.py"), *(REPO / "netlab").rglob("*.py")]):
        in_pkg = path.is_relative_to(PKG)
        rel = path.relative_to(PKG if in_pkg else REPO)
        layer = (rel.parts[0] if len(rel.parts) > 1 else None) if in_pkg else None
        for module, names, line in _imports(path):
            if module.startswith("netlab") and in_pkg:
                bad.append(f"p2pwalrus/{rel}:{line}: the package imports netlab")
                continue
            target = _package_of(module) if module.startswith("p2pwalrus") else module
            where = f"{'p2pwalrus/' if in_pkg else ''}{rel}:{line}"
            if layer in ALLOWED and target not in ALLOWED[layer] and module != "p2pwalrus":
                bad.append(f"{where}: {layer}/ imports {module}")
            own = layer or (rel.stem if in_pkg else str(rel.with_suffix("")).replace("/", "."))
            if target != own and any(n.startswith("_") and not n.startswith("__") for n in names):
                bad.append(f"{where}: private name(s) {[n for n in names if n.startswith('_')]} from {module}")
    return bad


def test_no_import_runs_upward_or_takes_a_private_name():
    bad = _violations()
    assert not bad, "layer violations:\n" + "\n".join(bad)


# What the pure core must never import: event loops, sockets, processes, files, the network stack.
IO_MODULES = {"trio", "anyio", "asyncio", "socket", "ssl", "select", "selectors", "subprocess", "multiprocessing",
              "shutil", "tempfile", "pathlib", "io", "http", "urllib", "sqlite3", "libp2p", "multiaddr", "hypercorn",
              "click", "rich", "signal", "fcntl", "mmap"}


def test_the_core_does_no_io():
    bad = []
    for path in sorted((PKG / "core").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            for name in names:
                if name.split(".")[0] in IO_MODULES:
                    bad.append(f"{path.relative_to(REPO)}:{node.lineno}: imports {name}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("open", "input", "print"):
                bad.append(f"{path.relative_to(REPO)}:{node.lineno}: calls {node.func.id}()")
    assert not bad, "I/O in the pure core:\n" + "\n".join(bad)
