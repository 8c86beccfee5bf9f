"""What every part of the client shares: its errors and the progress callbacks."""

from __future__ import annotations

from ..errors import BlobInvalidError, BlobExpiredError  # noqa: F401  (defined in errors.py; importable from here)


class Progress:
    """What the CLI's progress bars implement; the default does nothing."""

    def start(self, description: str, total: int) -> None: ...

    def advance(self, amount: int) -> None: ...

    def done(self) -> None: ...

    def certifying(self, blob_id: bytes) -> None:
        """The certificate is built and about to be published (a store is past undoing)."""

    def paying(self, quote) -> None:
        """A store or extension is about to be paid for (``payments.Quote``: the cost, the balance)."""
