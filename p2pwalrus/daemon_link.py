"""The CLI's side of `p2pwalrus daemon`: a store or a read handed to this client's daemon.

A daemon keeps the network stack loaded, its connections open and the membership known,
and serves the publisher/aggregator API on a Unix socket under the client's directory,
one socket per network (`daemon_socket`). The CLI uses it when one answers there, as
`tahoe put` uses the client node, so a command costs its own start-up (about 0.1 s) and
the work instead of loading libp2p, dialling and pulling the membership each time.
Stores are paid from the same key and wallet journal as without a daemon.

Light at import (standard library only): the command that finds no daemon loads the
network stack itself, as before. P2PWALRUS_DAEMON=off makes every command go direct.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
from pathlib import Path

from .errors import DaemonError  # noqa: F401  (defined in errors.py; importable from here)

DAEMON_ENV = "P2PWALRUS_DAEMON"
SOCKET_PATH_MAX = 107  # bytes of sun_path, less its terminating NUL (Linux)
CONNECT_TIMEOUT = 2.0  # a daemon that does not accept within this is treated as absent
REPLY_TIMEOUT = 900.0  # no byte from the daemon for this long: the command fails (never hangs)
DETAIL_HEADER = "X-P2PWalrus-Store"  # the store's figures, beside Walrus's JSON body
_BLOCK = 1 << 20


def network_key(net) -> str:
    """A short name for one network: its file (resolved), name, shard count and genesis time,
    so a testnet made again in the same directory is another network."""
    source = str(Path(net.source).resolve()) if net.source else ""
    text = f"{source}\0{net.name}\0{net.n_shards}\0{net.genesis_time!r}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def daemon_socket(net, client_dir: Path) -> Path:
    return client_dir / "daemon" / f"{network_key(net)}.sock"


def disabled() -> bool:
    return os.environ.get(DAEMON_ENV, "").strip().lower() in ("off", "0", "no", "false")


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path):
        super().__init__("localhost", timeout=REPLY_TIMEOUT, blocksize=_BLOCK)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(CONNECT_TIMEOUT)
            sock.connect(str(self._path))
            sock.settimeout(REPLY_TIMEOUT)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class DaemonLink:
    """One connection to a running daemon (`find` it first)."""

    def __init__(self, path: Path):
        self.path = path
        self.conn = _UnixHTTPConnection(path)

    @classmethod
    def find(cls, net, client_dir: Path) -> "DaemonLink | None":
        """The daemon serving `net` for this client, if one accepts a connection now."""
        if disabled():
            return None
        path = daemon_socket(net, client_dir)
        if not path.exists():
            return None
        link = cls(path)
        try:
            link.conn.connect()
        except OSError:  # a socket left by a daemon that died: go direct
            link.conn.close()
            return None
        return link

    def close(self) -> None:
        self.conn.close()

    def _reply(self) -> http.client.HTTPResponse:
        try:
            return self.conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise DaemonError(f"the daemon at {self.path} broke off ({exc or type(exc).__name__}); "
                              f"run the command again, or with {DAEMON_ENV}=off to go direct") from None

    @staticmethod
    def _error(resp: http.client.HTTPResponse) -> DaemonError:
        body = resp.read(1 << 16)
        try:
            message = json.loads(body)["error"]["message"]
        except Exception:
            message = body.decode("utf-8", "replace").strip() or resp.reason
        return DaemonError(message)

    def _call(self, method: str, url: str, **request) -> http.client.HTTPResponse:
        """One request; its response if 200, else the daemon's error raised as a DaemonError."""
        try:
            self.conn.request(method, url, **request)
        except OSError as exc:
            raise DaemonError(f"the daemon at {self.path} broke off ({exc})") from None
        resp = self._reply()
        if resp.status != 200:
            raise self._error(resp)
        return resp

    @staticmethod
    def _local(path: str) -> str:
        """A path the daemon (this user's) opens itself, as a query value."""
        from urllib.parse import quote

        return quote(os.path.abspath(path), safe="")

    def store(self, path: str, *, epochs: int, deletable: bool, force: bool) -> tuple[dict, dict]:
        """Store the file at `path`, which the daemon reads itself: no copy through the socket.
        Returns (Walrus's publisher JSON, the store's figures)."""
        query = (f"epochs={epochs}" + ("&deletable=true" if deletable else "") + ("&force=true" if force else "")
                 + f"&path={self._local(path)}")
        resp = self._call("PUT", f"/v1/blobs?{query}", body=b"", headers={"Content-Length": "0"})
        body = json.loads(resp.read())
        detail = json.loads(resp.getheader(DETAIL_HEADER) or "{}")
        return body, detail

    def read_to_file(self, blob_id: str, path: str) -> int:
        """Have the daemon write the blob, or the whole chunked file, into the empty file at
        `path` itself: no copy through the socket. Returns the bytes written."""
        resp = self._call("GET", f"/v1/blobs/{blob_id}?out={self._local(path)}")
        return int(json.loads(resp.read())["size"])

    def read_into(self, blob_id: str, out) -> int:
        """GET the blob (or the whole chunked file) into the binary file `out`; bytes written."""
        resp = self._call("GET", f"/v1/blobs/{blob_id}")
        expected = resp.getheader("Content-Length")
        buf = bytearray(_BLOCK)
        view = memoryview(buf)
        total = 0
        try:
            while True:
                got = resp.readinto(buf)
                if not got:
                    break
                out.write(view[:got])
                total += got
        except (OSError, http.client.HTTPException) as exc:
            raise DaemonError(f"the daemon broke off after {total} bytes ({exc}); nothing is complete") from None
        if expected is not None and total != int(expected):
            raise DaemonError(f"the daemon sent {total} of {expected} bytes (a chunk failed to read or verify); "
                              "nothing is complete")
        return total
