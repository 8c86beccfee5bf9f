"""Every exception class lives in p2pwalrus/errors.py; the modules that raise them still export them."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

from p2pwalrus import errors

MOVED = {
    "p2pwalrus.node.datadir_lock": ["DataDirInUseError"],
    "p2pwalrus.gateway.asgi": ["HTTPError", "Unsatisfiable", "BadRange"],
    "p2pwalrus.client.site": ["SiteError"],
    "p2pwalrus.p2p.identity": ["IdentityError"],
    "p2pwalrus.cli_committee": ["EpochNotDecidedError"],
    "p2pwalrus.core.records": ["InvalidRecordError"],
    "p2pwalrus.core.quilt": ["QuiltError", "QuiltPatchNotFoundError", "InvalidPatchIdError"],
    "p2pwalrus.core.liveness": ["InvalidLivenessMessage"],
    "p2pwalrus.core.placement": ["PlacementError"],
    "p2pwalrus.core.certificates": ["InvalidCertificateError"],
    "p2pwalrus.core.manifest": ["ManifestError"],
    "p2pwalrus.client.common": ["BlobInvalidError", "BlobExpiredError"],
    "p2pwalrus.client.wallet": ["WalletError", "NoLedgerError", "InsufficientBalanceError", "UnknownAccountError",
                                "SequenceUsedError", "NoQuorumError", "WrongEpochError", "NotANodeError"],
    "p2pwalrus.client.payments": ["InsufficientFundsError"],
    "p2pwalrus.core.wal.amounts": ["AmountError"],
    "p2pwalrus.core.wal.genesis": ["GenesisError"],
    "p2pwalrus.core.wal.orders": ["InvalidOrderError"],
    "p2pwalrus.core.wal.votes": ["InvalidVoteError"],
    "p2pwalrus.core.wal.payments": ["PaymentError"],
    "p2pwalrus.core.wal.epoch_state": ["InvalidEpochStateError"],
    "p2pwalrus.core.wal.agreement": ["InvalidMessageError"],
    "p2pwalrus.core.wal.placement_stake": ["StakePlacementError"],
    "p2pwalrus.core.wal.ledger": ["Refusal", "ConservationError"],
}


def test_no_exception_class_is_defined_outside_errors_py():
    import re

    package = Path(errors.__file__).resolve().parent
    pattern = re.compile(r"^class (\w+)\(([^)]*)\):", re.M)
    outside = []
    for path in package.rglob("*.py"):
        if path.name == "errors.py":
            continue
        for name, bases in pattern.findall(path.read_text()):
            cls = getattr(errors, name, None)
            if any(b.strip().endswith(("Error", "Exception", "Refusal")) for b in bases.split(",")) and cls is None:
                outside.append(f"{path.relative_to(package)}: {name}")
    assert not outside, outside


@pytest.mark.parametrize("module", sorted(MOVED))
def test_old_homes_still_export_the_same_classes(module):
    mod = importlib.import_module(module)
    for name in MOVED[module]:
        assert getattr(mod, name) is getattr(errors, name)


def test_every_error_class_has_a_docstring_and_errors_imports_nothing():
    tree = ast.parse(Path(errors.__file__).read_text())
    assert not [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    for name, cls in vars(errors).items():
        if inspect.isclass(cls) and issubclass(cls, BaseException) and cls.__module__ == errors.__name__:
            assert cls.__doc__ and cls.__doc__.strip(), name
