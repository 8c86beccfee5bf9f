"""The exception hierarchy: every error a user can meet says what happened and what to do.

Every exception class of p2pwalrus is defined here, grouped by area; the module where
each is raised imports it back, so ``from p2pwalrus.core.quilt import QuiltError`` and
the like keep working. Nothing heavy is imported here: the CLI loads this at start-up.
"""


class P2PWalrusError(Exception):
    """Base of all p2pwalrus errors."""


# --- encoding, blobs, quilts and manifests -----------------------------------------------


class EncodingError(P2PWalrusError):
    """Bad encoding parameters or input (shard count, blob size, sliver shapes)."""


class BlobTooLargeError(EncodingError):
    """The blob exceeds the largest size encodable with this shard count."""


class InvalidBlobIdError(P2PWalrusError, ValueError):
    """A blob ID string could not be parsed."""


class QuiltError(EncodingError):
    """Files that cannot make a quilt (too many, too large, bad identifiers), or quilt bytes
    that are not a valid QuiltV1."""


class InvalidPatchIdError(InvalidBlobIdError):
    """A quilt patch ID string could not be parsed."""


class ManifestError(P2PWalrusError):
    """Bytes that begin like a manifest but do not parse as one (or a manifest that cannot be made)."""


# --- reading and verifying -----------------------------------------------------------------


class VerificationError(P2PWalrusError):
    """Data from a peer does not match what it claims to be (sliver, symbol, proof, metadata)."""


class DecodingError(P2PWalrusError):
    """Not enough valid slivers or symbols to decode, or the decoded blob is inconsistent."""


class InconsistentBlobError(DecodingError):
    """The blob was encoded inconsistently by its writer; carries the proof when one was built."""

    def __init__(self, message: str, proof=None):
        super().__init__(message)
        self.proof = proof


class NotEnoughShardsError(P2PWalrusError):
    """Too few shards' holders answered to complete a read or write."""


class BlobNotFoundError(P2PWalrusError):
    """No certificate or metadata for this blob ID is known to the network."""


class QuiltPatchNotFoundError(BlobNotFoundError):
    """The quilt has no patch with this identifier."""


# --- wire messages ---------------------------------------------------------------------


class ProtocolError(P2PWalrusError):
    """A peer sent a malformed, oversized or unexpected message."""


class InvalidRecordError(ProtocolError):
    """A node record failed validation; ``reason`` says why in a few words."""

    def __init__(self, reason: str):
        super().__init__(f"invalid node record: {reason}")
        self.reason = reason


class StaleRecordError(InvalidRecordError):
    """A well-formed, well-signed record refused only by our clock (expired, or issued in
    our future): its sender may have judged it valid by its own clock."""


class InvalidLivenessMessage(ProtocolError):
    """A heartbeat or liveness message failed validation; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(f"invalid liveness message: {reason}")
        self.reason = reason


class InvalidCertificateError(ProtocolError):
    """A blob certificate or confirmation failed validation; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(f"invalid certificate: {reason}")
        self.reason = reason


# --- nodes: storage and placement ----------------------------------------------------------


class StorageError(P2PWalrusError):
    """The local sliver store failed (disk full, permissions, capacity)."""


class CapacityExceededError(StorageError):
    """Storing would exceed the node's configured capacity."""


class DataDirInUseError(StorageError):
    """Another node process holds this data dir."""


class PlacementError(P2PWalrusError):
    """Shards cannot be placed as required (empty live set, bad shard count, a
    live set too small to keep every node below the decoding threshold)."""


# --- configuration, keys, clients ------------------------------------------------------------


class NetworkConfigError(P2PWalrusError):
    """A network definition is missing or invalid."""


class IdentityError(P2PWalrusError):
    """The identity key file is unreadable or not an Ed25519 libp2p key."""


class SiteError(P2PWalrusError):
    """A directory that cannot be published, or a blob that is not a valid site manifest."""


class DaemonError(P2PWalrusError):
    """`p2pwalrus daemon` answered a store or read with an error (its message, for the user)
    or broke off."""


class EpochNotDecidedError(P2PWalrusError):
    """The epoch asked for has no decided state that this client could verify."""


# --- the client: blobs read and WAL wallets --------------------------------------------------


class BlobInvalidError(P2PWalrusError):
    """The network marked this blob invalid (it was encoded inconsistently)."""


class BlobExpiredError(P2PWalrusError):
    """The blob's storage period is over."""


class WalletError(P2PWalrusError):
    """A ledger operation that could not be done; the message says why and what to do."""


class NoLedgerError(WalletError, NetworkConfigError):
    """The network has no genesis: it keeps no WAL ledger."""


class InsufficientBalanceError(WalletError):
    """The account holds less WAL than the order moves."""
    def __init__(self, message: str, balance: int):
        super().__init__(message)
        self.balance = balance


class UnknownAccountError(WalletError):
    """No such account on the ledger (never funded)."""


class SequenceUsedError(WalletError):
    """The order's sequence number is taken by another order of this account."""


class NoQuorumError(WalletError):
    """Too few committee members answered or signed for a certificate."""


class WrongEpochError(WalletError):
    """The committee's nodes are at another epoch than the order's; no node voted for it."""


class NotANodeError(WalletError):
    """The staking target is not a storage node of this network."""


class InsufficientFundsError(WalletError):
    """A store or extension that this wallet cannot pay for (nothing was uploaded)."""

    def __init__(self, message: str, cost: int, balance: int):
        super().__init__(message)
        self.cost = cost
        self.balance = balance


# --- WAL: amounts, genesis, orders, votes, payments, epochs, agreement -------------------------


class AmountError(ValueError):
    """Text that is not an amount of WAL or FROST."""


class GenesisError(ValueError):
    """A [genesis] table that cannot be a network's genesis."""


class InvalidOrderError(ProtocolError):
    """An order, vote or certificate that is malformed or whose signatures do not hold."""


class InvalidVoteError(ProtocolError, ValueError):
    """A vote that is malformed or whose signature does not hold (a peer's: refused at the
    parsing boundary like every other malformed message)."""


class PaymentError(ProtocolError):
    """A store or extension that is not paid for; ``needed`` is the FROST it needs."""

    def __init__(self, message: str, needed: int = 0):
        super().__init__(message)
        self.needed = needed


class InvalidEpochStateError(ProtocolError):
    """An epoch state, a certificate or a chain failed verification; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(f"invalid epoch state: {reason}")
        self.reason = reason


class InvalidMessageError(ProtocolError):
    """A consensus message failed validation; ``reason`` says why in a few words."""

    def __init__(self, reason: str):
        super().__init__(f"invalid consensus message: {reason}")
        self.reason = reason


class StakePlacementError(P2PWalrusError):
    """Shards cannot be placed: no stake at all, a bad shard count or cap, a bad seed."""


class Refusal(Exception):
    """Why an authority does not sign an order; ``details`` carries the numbers (balance, ...)."""

    def __init__(self, code, message: str, **details):  # code: a core.wal.ledger.RefusalCode
        super().__init__(message)
        self.code = code
        self.details = details

    def to_json(self) -> dict:
        return {"code": self.code.value, "error": str(self), **self.details}


class ConservationError(AssertionError):
    """WAL was created or destroyed: the sum of all accounts differs from the supply (a bug)."""


# --- the HTTP gateway (answers, not user errors: not P2PWalrusError) --------------------------


class HTTPError(Exception):
    """Raised by a handler to answer `{"error": {...}}` with this status."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class Unsatisfiable(Exception):
    """The Range is valid but selects nothing of the representation: answer 416."""


class BadRange(Exception):
    """A byte Range header that does not parse (strict: answer 400, not the whole body)."""
