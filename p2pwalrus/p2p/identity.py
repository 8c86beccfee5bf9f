"""The node's persistent ed25519 libp2p identity, kept in its data dir as ``identity.key``.

The file holds the libp2p protobuf serialization of the private key (the same
form go-libp2p and kubo use), written atomically with mode 0600.
"""

from __future__ import annotations

import os
from pathlib import Path

from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.crypto.keys import KeyPair, KeyType
from libp2p.crypto.serialization import deserialize_private_key
from libp2p.peer.id import ID

from p2pwalrus.errors import IdentityError

IDENTITY_FILE = "identity.key"
_MAX_KEY_FILE = 4096


def _write_atomic(path: Path, data: bytes) -> None:
    """Temp file, fsync, then link into place (raises FileExistsError if ``path`` exists)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # link, not rename: never clobber a key another process created meanwhile
        os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_identity(path: str | os.PathLike[str]) -> KeyPair:
    """Load an Ed25519 key pair from a libp2p-serialized private key file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IdentityError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > _MAX_KEY_FILE:
        raise IdentityError(f"{path} is {len(data)} bytes: not a key file; move it away to make a new identity")
    try:
        private_key = deserialize_private_key(data)
    except Exception as exc:  # protobuf / key errors of several kinds
        raise IdentityError(f"{path} is not a libp2p private key ({exc}); move it away to make a new identity") from exc
    if private_key.get_type() != KeyType.Ed25519:
        raise IdentityError(f"{path} holds a {private_key.get_type().name} key; p2pwalrus needs Ed25519")
    return KeyPair(private_key, private_key.get_public_key())


def load_or_create_identity(data_dir: str | os.PathLike[str]) -> KeyPair:
    """Return the node's key pair from ``data_dir/identity.key``, creating it on first use."""
    data_dir = Path(data_dir)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise IdentityError(f"{data_dir} is a file, not a directory; name a directory for the identity key") from None
    except OSError as exc:
        raise IdentityError(f"cannot create the directory {data_dir}: {exc.strerror or exc}") from None
    path = data_dir / IDENTITY_FILE
    if path.exists():
        return load_identity(path)
    private_key = Ed25519PrivateKey.new()
    try:
        _write_atomic(path, private_key.serialize())
    except FileExistsError:  # lost a creation race: the other key wins
        return load_identity(path)
    except OSError as exc:
        raise IdentityError(f"cannot write {path}: {exc.strerror or exc}") from None
    return KeyPair(private_key, private_key.get_public_key())


def peer_id_of(keypair: KeyPair) -> ID:
    """The libp2p peer ID of a key pair (``str(...)`` gives the 12D3KooW... form)."""
    return ID.from_pubkey(keypair.public_key)
