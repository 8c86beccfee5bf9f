"""Every libp2p protocol ID and GossipSub topic p2pwalrus speaks: one place, named after what
each exchange does. Plain strings (py-libp2p's ``TProtocol`` is a ``str``), so the pure core
owns them and node, client and tools import them from here.

A version changes when its messages change in a way an older peer cannot check: 2.0.0
(issue 13): confirmations sign the deletable flag and the owner, certificates are judged by
the validator's own shard map, a delete names its epoch and a nonce.
"""

from __future__ import annotations

# --- blobs: store, read, repair (request/response, node/service.py and client/) ---
STORE = "/p2pwalrus/store/2.0.0"
GET_METADATA = "/p2pwalrus/metadata/1.0.0"
GET_SLIVER = "/p2pwalrus/sliver/1.0.0"
GET_RECOVERY = "/p2pwalrus/recovery/1.0.0"
BLOB_STATUS = "/p2pwalrus/status/1.0.0"
LIST_BLOBS = "/p2pwalrus/blobs/1.0.0"
DELETE = "/p2pwalrus/delete/2.0.0"
NODE_INFO = "/p2pwalrus/info/1.0.0"

# --- certificates and invalid-blob proofs ---
GET_CERT = "/p2pwalrus/cert/2.0.0"
PUT_CERT = "/p2pwalrus/cert-put/2.0.0"
LIST_CERTS = "/p2pwalrus/cert-list/2.0.0"
CONFIRM = "/p2pwalrus/confirm/2.0.0"
PUT_PROOF = "/p2pwalrus/proof-put/1.0.0"
GET_PROOF = "/p2pwalrus/proof/1.0.0"

# --- membership and liveness ---
MEMBERS = "/p2pwalrus/members/1.0.0"  # pull of every live record
MEMBERS_PULL_REQUEST = b"\x01"  # its request frame: version 1, "all live records"
HEARTBEAT = "/p2pwalrus/heartbeat/1.2.0"  # 1.1: beats carry a watching flag; 1.2: relayed records

# --- WAL: ledger, votes, epochs ---
LEDGER_SIGN = "/p2pwalrus/ledger-sign/1.0.0"
LEDGER_CONFIRM = "/p2pwalrus/ledger-confirm/1.0.0"
LEDGER_ACCOUNT = "/p2pwalrus/ledger-account/1.0.0"
LEDGER_CERTS = "/p2pwalrus/ledger-certs/1.0.0"
LEDGER_SUMMARY = "/p2pwalrus/ledger-summary/1.0.0"
NODE_VOTE = "/p2pwalrus/node-vote/1.0.0"
EPOCH = "/p2pwalrus/epoch/1.0.0"
EPOCH_CHAIN = "/p2pwalrus/epoch-chain/1.0.0"  # decided states and certificates, from an epoch on


# --- GossipSub topics (one set per network) ---
def certs_topic(network: str) -> str:
    return f"/p2pwalrus/{network}/certs/2"  # 2: confirmations bind labels


def proofs_topic(network: str) -> str:
    return f"/p2pwalrus/{network}/proofs/1"


def nodes_topic(network: str) -> str:
    return f"/p2pwalrus/{network}/nodes/1"


def down_topic(network: str) -> str:
    return f"/p2pwalrus/{network}/down/1"
