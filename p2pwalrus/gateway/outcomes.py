"""What a failed request tells its client: an exception mapped to an HTTP status, an outcome label
for the metrics and a message (5xx ones fixed words; the detail goes to the log).
"""

from __future__ import annotations

import trio

from ..client.client import BlobExpiredError, BlobInvalidError
from ..core.placement import PlacementError
from ..errors import (
    BlobNotFoundError,
    BlobTooLargeError,
    EncodingError,
    InvalidBlobIdError,
    NetworkConfigError,
    NotEnoughShardsError,
    P2PWalrusError,
)


def leaf_errors(exc: BaseException):
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            yield from leaf_errors(sub)
    else:
        yield exc


# Most specific meaning first: an exception group is answered by its most telling member.
def _insufficient_funds():
    from ..client.payments import InsufficientFundsError

    return InsufficientFundsError


_ERROR_MAP: list[tuple[type, int, str]] = [
    (_insufficient_funds(), 402, "payment_required"),
    (InvalidBlobIdError, 400, "bad_request"),
    (BlobTooLargeError, 413, "too_large"),
    (BlobNotFoundError, 404, "not_found"),
    (BlobExpiredError, 410, "expired"),
    (BlobInvalidError, 410, "invalid"),
    (NotEnoughShardsError, 503, "unavailable"),
    (PlacementError, 503, "unavailable"),
    (NetworkConfigError, 503, "unavailable"),
    (trio.TooSlowError, 504, "timeout"),
    (EncodingError, 400, "bad_request"),
    (P2PWalrusError, 500, "error"),
]


# What a 5xx reply says: fixed words, never an exception's text (which can name local
# paths, peers' replies or library internals); the detail goes to the gateway's log.
SERVER_MESSAGES = {
    500: "internal error; the gateway's log has the details",
    503: "not enough storage nodes answered to complete the request; retry later",
    504: "the storage network did not answer in time; retry later",
}


def classify(exc: BaseException) -> tuple[int, str, str] | None:
    """(HTTP status, outcome label, message) for a client error, or None if it is a bug.

    4xx messages are this project's own words about the request; 5xx ones are fixed."""
    leaves = list(leaf_errors(exc))
    for kind, status, outcome in _ERROR_MAP:
        for leaf in leaves:
            if isinstance(leaf, kind):
                if status >= 500:
                    return status, outcome, SERVER_MESSAGES.get(status, SERVER_MESSAGES[500])
                return status, outcome, str(leaf) or kind.__name__
    return None


def short_error(exc: BaseException) -> str:
    leaves = list(leaf_errors(exc))
    return "; ".join(f"{type(e).__name__}: {str(e)[:300]}" for e in leaves[:3])
