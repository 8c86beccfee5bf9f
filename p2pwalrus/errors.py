"""The exception hierarchy: every error a user can meet says what happened and what to do."""


class P2PWalrusError(Exception):
    """Base of all p2pwalrus errors."""


class EncodingError(P2PWalrusError):
    """Bad encoding parameters or input (shard count, blob size, sliver shapes)."""


class BlobTooLargeError(EncodingError):
    """The blob exceeds the largest size encodable with this shard count."""


class InvalidBlobIdError(P2PWalrusError, ValueError):
    """A blob ID string could not be parsed."""


class VerificationError(P2PWalrusError):
    """Data from a peer does not match what it claims to be (sliver, symbol, proof, metadata)."""


class DecodingError(P2PWalrusError):
    """Not enough valid slivers or symbols to decode, or the decoded blob is inconsistent."""


class InconsistentBlobError(DecodingError):
    """The blob was encoded inconsistently by its writer; carries the proof when one was built."""

    def __init__(self, message: str, proof=None):
        super().__init__(message)
        self.proof = proof


class ProtocolError(P2PWalrusError):
    """A peer sent a malformed, oversized or unexpected message."""


class StorageError(P2PWalrusError):
    """The local sliver store failed (disk full, permissions, capacity)."""


class CapacityExceededError(StorageError):
    """Storing would exceed the node's configured capacity."""


class NetworkConfigError(P2PWalrusError):
    """A network definition is missing or invalid."""


class NotEnoughShardsError(P2PWalrusError):
    """Too few shards' holders answered to complete a read or write."""


class BlobNotFoundError(P2PWalrusError):
    """No certificate or metadata for this blob ID is known to the network."""
