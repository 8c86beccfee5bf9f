"""Every JSON request header and JSON reply of the blob and certificate exchanges, typed.

One frozen dataclass per message, in the pure core (no libp2p, no trio, no I/O). A message
checks itself when it is built (``__post_init__``: types, non-negative epochs, 32-byte blob
IDs, signature and nonce lengths) and when it is parsed from a peer (``from_json(obj, *,
n_shards)``: the same, plus the bounds that depend on the network: pair and shard indices
below n, list lengths): a malformed message raises ``ProtocolError`` naming the field, so
nothing malformed gets past the parsing boundary into a handler or a client.

The wire form is the one peers spoke before these classes existed (same field names, same
value forms): ``to_json()`` gives the dict ``rpc.send_json`` sends. Unknown fields are
ignored, so a peer may add some later.

Exchanges (protocol IDs in ``core/protocols.py``); a binary frame follows some headers:

=============  =======================  ==============================================
protocol       request                  reply
=============  =======================  ==============================================
STORE          StoreRequest + frames    StoreReply
GET_METADATA   GetMetadataRequest       BlobReply (+ metadata frame when ok)
GET_SLIVER     GetSliverRequest         BlobReply (+ sliver frame when ok)
GET_RECOVERY   RecoveryRequest          RecoveryReply (+ symbols frame when ok)
BLOB_STATUS    BlobStatusRequest        BlobStatusReply
LIST_BLOBS     ListBlobsRequest         ListBlobsReply
DELETE         DeleteRequest            Reply
NODE_INFO      NodeInfoRequest          NodeInfoReply
GET_CERT       GetCertRequest           BlobReply (+ certificate frame when ok)
PUT_CERT       certificate frame        NewReply
LIST_CERTS     ListCertsRequest         ListCertsReply
CONFIRM        ConfirmRequest           ConfirmReply
PUT_PROOF      proof frame              NewReply
GET_PROOF      GetProofRequest          BlobReply (+ proof frame when ok)
=============  =======================  ==============================================

Every reply may be an error: ``{"ok": false, "error": "..."}`` (what ``rpc.serve`` answers
to any ProtocolError), with the extra fields its class names (``invalid``, ``refused``).

Modules: ``base.py`` (bounds, field checks, the ``Request`` and ``Reply`` bases),
``requests.py``, ``replies.py`` and ``listings.py`` (LIST_BLOBS, LIST_CERTS); every name
is importable from here.
"""

from __future__ import annotations

from ...errors import ProtocolError
from .base import (
    BLOB_ID_BYTES,
    SIGNATURE_BYTES,
    PRIMARY,
    SECONDARY,
    MAX_OWNER_CHARS,
    MAX_ERROR_CHARS,
    MAX_TIMING_KEYS,
    MAX_SECONDS,
    MAX_CERTS_LISTED,
    MAX_PROOFS_LISTED,
    MAX_BLOBS_LISTED,
    MAX_LIVE_LISTED,
    check_int,
    check_str,
    check_bool,
    check_list,
    check_indices,
    check_blob_id,
    blob_id_from_str,
    blob_id_to_str,
    Request,
    Reply,
)
from .requests import (
    EmptyRequest,
    BlobRequest,
    GetMetadataRequest,
    BlobStatusRequest,
    GetCertRequest,
    GetProofRequest,
    ListBlobsRequest,
    NodeInfoRequest,
    ListCertsRequest,
    StoreRequest,
    ConfirmRequest,
    GetSliverRequest,
    RecoveryRequest,
    DeleteRequest,
)
from .replies import (
    BlobReply,
    INVALID_REPLY,
    NewReply,
    StoreReply,
    ConfirmReply,
    RecoveryReply,
    BlobStatusReply,
    NodeInfoReply,
)
from .listings import (
    BlobListing,
    ListBlobsReply,
    CertListing,
    ListCertsReply,
)

# Each request's reply class (``call`` helpers parse the answer with it).
for _request, _reply in (
    (StoreRequest, StoreReply), (GetMetadataRequest, BlobReply), (GetSliverRequest, BlobReply),
    (RecoveryRequest, RecoveryReply), (BlobStatusRequest, BlobStatusReply), (ListBlobsRequest, ListBlobsReply),
    (DeleteRequest, Reply), (NodeInfoRequest, NodeInfoReply), (GetCertRequest, BlobReply),
    (ListCertsRequest, ListCertsReply), (ConfirmRequest, ConfirmReply), (GetProofRequest, BlobReply),
):
    _request.reply = _reply
del _request, _reply

# PUT_CERT and PUT_PROOF take a raw frame (a certificate, a proof message) and answer NewReply.
PUT_CERT_REPLY = PUT_PROOF_REPLY = NewReply


def parse_reply(request: Request, obj: dict, *, n_shards: int):
    """The reply to ``request`` from a peer's JSON, typed and checked (ProtocolError otherwise)."""
    return request.reply.from_json(obj, n_shards=n_shards)


__all__ = [
    "ProtocolError",
    "BLOB_ID_BYTES",
    "SIGNATURE_BYTES",
    "PRIMARY",
    "SECONDARY",
    "MAX_OWNER_CHARS",
    "MAX_ERROR_CHARS",
    "MAX_TIMING_KEYS",
    "MAX_SECONDS",
    "MAX_CERTS_LISTED",
    "MAX_PROOFS_LISTED",
    "MAX_BLOBS_LISTED",
    "MAX_LIVE_LISTED",
    "check_int",
    "check_str",
    "check_bool",
    "check_list",
    "check_indices",
    "check_blob_id",
    "blob_id_from_str",
    "blob_id_to_str",
    "Request",
    "Reply",
    "EmptyRequest",
    "BlobRequest",
    "GetMetadataRequest",
    "BlobStatusRequest",
    "GetCertRequest",
    "GetProofRequest",
    "ListBlobsRequest",
    "NodeInfoRequest",
    "ListCertsRequest",
    "StoreRequest",
    "ConfirmRequest",
    "GetSliverRequest",
    "RecoveryRequest",
    "DeleteRequest",
    "BlobReply",
    "INVALID_REPLY",
    "NewReply",
    "StoreReply",
    "ConfirmReply",
    "RecoveryReply",
    "BlobStatusReply",
    "NodeInfoReply",
    "BlobListing",
    "ListBlobsReply",
    "CertListing",
    "ListCertsReply",
    "PUT_CERT_REPLY",
    "PUT_PROOF_REPLY",
    "parse_reply",
]
