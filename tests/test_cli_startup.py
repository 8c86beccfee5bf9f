"""What the CLI loads: offline commands never import libp2p; network commands load it lean.

Each check runs in a fresh interpreter (this test process has libp2p loaded already).
No wall-clock assertions: they would be flaky on a shared machine; the import set is what
decides start-up time (see issue 14: libp2p alone cost about 1 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

# Modules whose presence means a command paid for a part it does not use.
_NETWORK_STACK = ("libp2p", "trio", "p2pwalrus.client", "p2pwalrus.node", "p2pwalrus.gateway.app")
_UNUSED_LIBP2P_PARTS = ("aioquic", "libp2p.relay", "libp2p.security.tls.autotls.acme", "zeroconf", "httpx",
                        "trio_websocket", "libp2p.transport.quic.transport")


def _run(code: str, env: dict | None = None) -> dict:
    """Run `code` in a fresh interpreter; it prints one JSON line last, which is returned."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _loaded(names) -> str:
    return f"[m for m in sys.modules if any(m == n or m.startswith(n + '.') for n in {list(names)!r})]"


def _invoke_cli(args: list[str]) -> str:
    """Code that runs the CLI's click group on `args` in-process, then reports what was loaded."""
    return f"""
        import json, sys
        import p2pwalrus.cli
        try:
            p2pwalrus.cli.main.main(args={args!r}, prog_name="p2pwalrus")
        except SystemExit as exc:
            code = exc.code
        else:
            code = 0
        print(json.dumps({{"code": code, "loaded": {_loaded(_NETWORK_STACK)}}}))
    """


def test_importing_the_cli_loads_no_network_stack():
    out = _run(f"""
        import json, sys
        import p2pwalrus.cli
        print(json.dumps({{"loaded": {_loaded(_NETWORK_STACK)}}}))
    """)
    assert out["loaded"] == []


@pytest.mark.parametrize("args", [["--help"], ["store", "--help"], ["gateway", "--help"], ["--version"]])
def test_help_loads_no_network_stack(args):
    out = _run(_invoke_cli(args))
    assert out["code"] == 0
    assert out["loaded"] == []


def test_blob_id_loads_no_network_stack(tmp_path):
    path = tmp_path / "one-kib.bin"
    path.write_bytes(os.urandom(1024))
    out = _run(_invoke_cli(["blob-id", str(path), "--shards", "10"]))
    assert out["code"] == 0
    assert out["loaded"] == []


def test_deciding_whether_a_file_is_chunked_loads_no_codec(tmp_path):
    # What a store through the daemon does before it hands the path over: numpy and the codec
    # cost it 40 ms of a 0.16 s command.
    path = tmp_path / "one-kib.bin"
    path.write_bytes(os.urandom(1024))
    out = _run(f"""
        import json, sys
        from p2pwalrus.cli_files import wants_chunks
        from p2pwalrus.core.manifest import default_chunk_size
        print(json.dumps({{"chunked": wants_chunks({str(path)!r}, 31, None), "largest": default_chunk_size(31),
                          "loaded": {_loaded(["numpy", "reed_solomon_leopard", "p2pwalrus.core.codec"])}}}))
    """)
    assert out["loaded"] == []
    assert out["chunked"] is False
    from p2pwalrus.core.rs2 import EncodingConfig

    assert out["largest"] == EncodingConfig(31).max_blob_size == 11 * 21 * 65534


def test_the_gateway_package_loads_its_parts_on_first_use():
    out = _run(f"""
        import json, sys
        import p2pwalrus.gateway as g
        before = {_loaded(["libp2p", "p2pwalrus.gateway.app"])}
        g.GatewayConfig
        print(json.dumps({{"before": before, "after": {_loaded(["p2pwalrus.gateway.app"])}}}))
    """)
    assert out["before"] == []
    assert out["after"] == ["p2pwalrus.gateway.app"]


def test_the_client_loads_libp2p_without_quic_autotls_relay_websocket_mdns():
    out = _run(f"""
        import json, sys
        import p2pwalrus.client.client
        from p2pwalrus.p2p.patches import lean_import as lean_libp2p
        print(json.dumps({{"lean": lean_libp2p._installed, "unused": {_loaded(_UNUSED_LIBP2P_PARTS)},
                          "stand_ins_left": [m for m in lean_libp2p._STAND_INS if m in sys.modules]}}))
    """)
    assert out["lean"] is True
    assert out["unused"] == []
    assert out["stand_ins_left"] == []  # explicit later imports get the real modules


def test_a_client_process_also_leaves_out_tls_rsa_secio_pnet_and_dns():
    out = _run(f"""
        import json, sys
        import p2pwalrus.client.client
        from p2pwalrus.p2p.patches import lean_import as lean_libp2p
        from p2pwalrus.p2p.host import build_host
        from libp2p.crypto.ed25519 import create_new_key_pair
        import multiaddr
        build_host(create_new_key_pair(), [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")])  # a host still builds
        print(json.dumps({{"lean": lean_libp2p._installed,
                          "unused": {_loaded(["Crypto", "libp2p.security.tls", "libp2p.crypto.rsa",
                                              "libp2p.security.secio.transport", "dns.resolver"])},
                          "stand_ins_left": [m for m in lean_libp2p._CLIENT_STAND_INS if m in sys.modules]}}))
    """, env={"P2PWALRUS_LEAN_LIBP2P": "client"})
    assert out["lean"] is True
    assert out["unused"] == []
    assert out["stand_ins_left"] == []


def test_every_client_command_loads_libp2p_as_a_client_and_nodes_load_it_whole():
    """`read` imported the client (client/chunked.py) before _with_client asked for client mode,
    so every read loaded RSA, pycryptodome, cffi's C parser, x509, prometheus_client and the
    persistent peerstores: the CLI group asks for it before any command runs."""
    out = _run("""
        import json, os
        import p2pwalrus.cli
        seen = {}
        for name in ("read", "store", "blob-status", "node", "gateway"):
            os.environ.pop("P2PWALRUS_LEAN_LIBP2P", None)
            try:
                p2pwalrus.cli.main.main(args=[name, "--help"], prog_name="p2pwalrus")
            except SystemExit:
                pass
            seen[name] = os.environ.get("P2PWALRUS_LEAN_LIBP2P")
        os.environ["P2PWALRUS_LEAN_LIBP2P"] = "client"
        import sys
        import p2pwalrus.client.chunked  # what `read` imports first
        print(json.dumps({"seen": seen, "unused": [m for m in sys.modules if m.split(".")[0] in
                          ("Crypto", "pycparser", "prometheus_client") or m.startswith("libp2p.peer.persistent")]}))
    """)
    assert out["seen"] == {"read": "client", "store": "client", "blob-status": "client", "node": None, "gateway": None}
    assert out["unused"] == []


def test_the_client_loads_no_dht_or_gossipsub_and_the_node_knows_gossipsubs_protocol_ids():
    out = _run(f"""
        import json, sys
        import p2pwalrus.client.client
        loaded = {_loaded(["libp2p.kad_dht.kad_dht", "libp2p.pubsub.gossipsub", "libp2p.pubsub.pubsub"])}
        from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11
        from p2pwalrus.p2p.host import _LONG_LIVED
        print(json.dumps({{"loaded": loaded, "same": _LONG_LIVED == {{PROTOCOL_ID, PROTOCOL_ID_V11}}}}))
    """, env={"P2PWALRUS_LEAN_LIBP2P": "client"})
    assert out["loaded"] == []
    assert out["same"] is True


def test_lean_libp2p_can_be_switched_off():
    out = _run(f"""
        import json, sys
        import p2pwalrus.client.client
        print(json.dumps({{"unused": {_loaded(["aioquic", "libp2p.relay"])}}}))
    """, env={"P2PWALRUS_LEAN_LIBP2P": "0"})
    assert "aioquic" in out["unused"] and "libp2p.relay" in out["unused"]


def test_a_stand_in_refuses_to_be_used_and_the_real_module_still_imports():
    out = _run("""
        import json, sys
        import p2pwalrus.node
        import libp2p
        try:
            libp2p.QUICTransport(None)
            refused = None
        except RuntimeError as exc:
            refused = str(exc)
        from libp2p.transport.quic.transport import QUICTransport
        print(json.dumps({"refused": refused, "real": QUICTransport.__module__,
                          "has_file": hasattr(sys.modules[QUICTransport.__module__], "__file__")}))
    """)
    assert "P2PWALRUS_LEAN_LIBP2P=0" in out["refused"]
    assert out["real"] == "libp2p.transport.quic.transport" and out["has_file"]
