"""The typed wire messages (core/messages.py): each round-trips to the very dict peers sent
before it existed, and refuses malformed forms (wrong type, missing field, out of range,
oversized list) with a ProtocolError naming the field, when parsed and when built."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pwalrus.core import messages as m
from p2pwalrus.core import protocols
from p2pwalrus.core.blob_id import blob_id_to_str
from p2pwalrus.core.certificates import StorageConfirmation
from p2pwalrus.errors import ProtocolError

N = 10
BID = bytes(range(32))
HEX = BID.hex()
PEER = "12D3KooWGzBqxv7sHJDWvRkXWHkHnPSwy3ZuK4n5Vhv1YFzGHUmx"
CONF = StorageConfirmation(PEER, (1, 4), bytes(range(64)))
SIG, NONCE = bytes(range(64)), bytes(range(16))

# (message, the dict peers sent for it before core/messages.py): the wire form must not change.
CASES = [
    (m.StoreRequest(BID, 3, 5, (2, 7), True, PEER),
     {"blob_id": HEX, "epoch": 3, "end_epoch": 5, "pairs": [2, 7], "deletable": True, "owner": PEER}),
    (m.StoreRequest(BID, 3, 5, (0,), payment={"order": {"x": 1}, "votes": []}),
     {"blob_id": HEX, "epoch": 3, "end_epoch": 5, "pairs": [0], "deletable": False, "owner": "",
      "payment": {"order": {"x": 1}, "votes": []}}),
    (m.StoreReply(True, None, CONF, {3: "does not match"}, {"verify": 0.25, "write": 0.0}),
     {"ok": True, "confirmation": CONF.to_json(), "refused": {"3": "does not match"},
      "timing": {"verify": 0.25, "write": 0.0}}),
    (m.StoreReply.failed("no sliver of this blob was stored here", refused={1: "bad"}),
     {"ok": False, "error": "no sliver of this blob was stored here", "refused": {"1": "bad"}}),
    (m.StoreReply.failed("storage: capacity exceeded on this node"),
     {"ok": False, "error": "storage: capacity exceeded on this node"}),
    (m.GetMetadataRequest(BID), {"blob_id": HEX}),
    (m.BlobStatusRequest(BID), {"blob_id": HEX}),
    (m.GetCertRequest(BID), {"blob_id": HEX}),
    (m.GetProofRequest(BID), {"blob_id": HEX}),
    (m.BlobReply(), {"ok": True}),
    (m.BlobReply.not_found(), {"ok": False, "error": "not found"}),
    (m.INVALID_REPLY, {"ok": False, "error": "invalid", "invalid": True}),
    (m.BlobReply(True, None, False), {"ok": True, "invalid": False}),  # GET_CERT
    (m.BlobReply.not_found(invalid=True), {"ok": False, "error": "not found", "invalid": True}),
    (m.GetSliverRequest(BID, 9, "primary"), {"blob_id": HEX, "pair": 9, "kind": "primary"}),
    (m.GetSliverRequest(BID, 0, "secondary"), {"blob_id": HEX, "pair": 0, "kind": "secondary"}),
    (m.RecoveryRequest(BID, 2, "secondary", (0, 9)), {"blob_id": HEX, "pair": 2, "axis": "secondary",
                                                      "targets": [0, 9]}),
    (m.RecoveryReply(True, None, 2), {"ok": True, "count": 2}),
    (m.RecoveryReply.failed("not found"), {"ok": False, "error": "not found"}),
    (m.BlobStatusReply(True, None, (1, 2), True, False, 7),
     {"ok": True, "shards": [1, 2], "certified": True, "invalid": False, "end_epoch": 7}),
    (m.BlobStatusReply(True, None, (), False, False, None),
     {"ok": True, "shards": [], "certified": False, "invalid": False, "end_epoch": None}),
    (m.ListBlobsRequest(), {}),
    (m.ListBlobsReply(True, None, (m.BlobListing(BID, (3,), 4, True, False),)),
     {"ok": True, "blobs": [{"blob_id": blob_id_to_str(BID), "shards": [3], "end_epoch": 4, "certified": True,
                             "invalid": False}]}),
    (m.DeleteRequest(BID, 4, SIG, NONCE), {"blob_id": HEX, "signature": SIG.hex(), "epoch": 4, "nonce": NONCE.hex()}),
    (m.Reply(), {"ok": True}),
    (m.Reply.failed("not found"), {"ok": False, "error": "not found"}),
    (m.NodeInfoRequest(), {}),
    (m.NodeInfoReply(True, None, {"peer_id": PEER, "epoch": 2, "live": [PEER], "shards": [0, 1], "map_digest": "ab",
                                  "blobs": 3, "ledger": None, "repair": {"runs": 1}}),
     {"ok": True, "peer_id": PEER, "epoch": 2, "live": [PEER], "shards": [0, 1], "map_digest": "ab", "blobs": 3,
      "ledger": None, "repair": {"runs": 1}}),
    (m.NewReply(True, None, True), {"ok": True, "new": True}),
    (m.NewReply.failed("invalid certificate: bad signature"),
     {"ok": False, "error": "invalid certificate: bad signature"}),
    (m.ListCertsRequest(), {}),
    (m.ListCertsReply(True, None, (m.CertListing(BID, 5, 2),), (BID,)),
     {"ok": True, "certs": [[HEX, 5, 2]], "invalid": [HEX]}),
    (m.ConfirmRequest(BID, 3, 8), {"blob_id": HEX, "epoch": 3, "end_epoch": 8}),
    (m.ConfirmRequest(BID, 3, 8, {"p": 1}), {"blob_id": HEX, "epoch": 3, "end_epoch": 8, "payment": {"p": 1}}),
    (m.ConfirmReply(True, None, CONF), {"ok": True, "confirmation": CONF.to_json()}),
    (m.ConfirmReply.failed("only certified blobs are extended"),
     {"ok": False, "error": "only certified blobs are extended"}),
]


@pytest.mark.parametrize("message, wire", CASES, ids=lambda x: type(x).__name__ if not isinstance(x, dict) else "")
def test_round_trip_keeps_the_wire_form(message, wire):
    assert message.to_json() == wire
    # Through JSON text, as on the wire, and back.
    parsed = type(message).from_json(json.loads(json.dumps(wire, separators=(",", ":"))), n_shards=N)
    assert parsed == message
    assert json.dumps(parsed.to_json()) == json.dumps(wire)


def test_every_exchange_has_a_typed_request_and_reply():
    requests = [m.StoreRequest, m.GetMetadataRequest, m.GetSliverRequest, m.RecoveryRequest, m.BlobStatusRequest,
                m.ListBlobsRequest, m.DeleteRequest, m.NodeInfoRequest, m.GetCertRequest, m.ListCertsRequest,
                m.ConfirmRequest, m.GetProofRequest]
    assert {r.protocol for r in requests} | {protocols.PUT_CERT, protocols.PUT_PROOF} == {
        protocols.STORE, protocols.GET_METADATA, protocols.GET_SLIVER, protocols.GET_RECOVERY, protocols.BLOB_STATUS,
        protocols.LIST_BLOBS, protocols.DELETE, protocols.NODE_INFO, protocols.GET_CERT, protocols.PUT_CERT,
        protocols.LIST_CERTS, protocols.CONFIRM, protocols.PUT_PROOF, protocols.GET_PROOF}
    for r in requests:
        assert issubclass(r.reply, m.Reply)
    assert m.parse_reply(m.BlobStatusRequest(BID), {"ok": False, "error": "x"}, n_shards=N) == \
        m.BlobStatusReply(False, "x")


def test_optional_fields_default_as_old_peers_sent_them():
    # A store header of an older client: no deletable, no owner.
    req = m.StoreRequest.from_json({"blob_id": HEX, "epoch": 1, "end_epoch": 2, "pairs": [1]}, n_shards=N)
    assert req.deletable is False and req.owner == "" and req.payment is None
    # A listing of certificates without epochs, and unknown fields from newer peers.
    reply = m.ListCertsReply.from_json({"ok": True, "certs": [[HEX, 4]], "extra": 1}, n_shards=N)
    assert reply.certs == (m.CertListing(BID, 4, 0),) and reply.invalid == ()
    # Any reply may be the generic refusal rpc.serve sends for a ProtocolError.
    for cls in (m.StoreReply, m.ConfirmReply, m.RecoveryReply, m.BlobStatusReply, m.ListBlobsReply, m.NewReply,
                m.ListCertsReply, m.NodeInfoReply, m.BlobReply, m.Reply):
        got = cls.from_json({"ok": False, "error": "header is not JSON"}, n_shards=N)
        assert got.ok is False and got.error == "header is not JSON"


def _with(obj: dict, **changes) -> dict:
    out = dict(obj)
    for k, v in changes.items():
        if v is _DROP:
            out.pop(k, None)
        else:
            out[k] = v
    return out


_DROP = object()
STORE = {"blob_id": HEX, "epoch": 3, "end_epoch": 5, "pairs": [2, 7], "deletable": True, "owner": PEER}
SLIVER = {"blob_id": HEX, "pair": 1, "kind": "primary"}
RECOVERY = {"blob_id": HEX, "pair": 2, "axis": "primary", "targets": [0, 1]}
DELETE = {"blob_id": HEX, "signature": SIG.hex(), "epoch": 4, "nonce": NONCE.hex()}
CONFIRM = {"blob_id": HEX, "epoch": 3, "end_epoch": 8}
STATUS = {"ok": True, "shards": [1, 2], "certified": True, "invalid": False, "end_epoch": 7}
LISTING = {"blob_id": blob_id_to_str(BID), "shards": [3], "end_epoch": 4, "certified": True, "invalid": False}
INFO = {"ok": True, "peer_id": PEER, "epoch": 2, "live": [PEER], "shards": [0, 1], "map_digest": "ab", "blobs": 3}

# (class, malformed JSON, a word the refusal must contain)
MALFORMED = [
    # STORE
    (m.StoreRequest, _with(STORE, blob_id=5), "blob_id"),
    (m.StoreRequest, _with(STORE, blob_id="zz" * 32), "blob_id"),
    (m.StoreRequest, _with(STORE, blob_id="00" * 31), "blob_id"),
    (m.StoreRequest, _with(STORE, epoch=_DROP), "epoch"),
    (m.StoreRequest, _with(STORE, epoch=True), "epoch"),
    (m.StoreRequest, _with(STORE, epoch=-1), "epoch"),
    (m.StoreRequest, _with(STORE, end_epoch=2.0), "end_epoch"),
    (m.StoreRequest, _with(STORE, pairs="1,2"), "pairs"),
    (m.StoreRequest, _with(STORE, pairs=[1, N]), "pairs"),
    (m.StoreRequest, _with(STORE, pairs=[1, 1]), "pairs"),
    (m.StoreRequest, _with(STORE, pairs=[True]), "pairs"),
    (m.StoreRequest, _with(STORE, pairs=list(range(N)) + [0]), "pairs"),
    (m.StoreRequest, _with(STORE, deletable="yes"), "deletable"),
    (m.StoreRequest, _with(STORE, owner=7), "owner"),
    (m.StoreRequest, _with(STORE, owner="x" * 1000), "owner"),
    (m.StoreRequest, _with(STORE, payment=[1]), "payment"),
    (m.StoreReply, {"ok": True, "refused": {}}, "confirmation"),
    (m.StoreReply, {"ok": True, "confirmation": {"peer_id": PEER}}, "confirmation"),
    (m.StoreReply, {"ok": True, "confirmation": _with(CONF.to_json(), shards=[N])}, "shards"),
    (m.StoreReply, {"ok": False, "error": "x", "refused": {"10": "bad"}}, "refused"),
    (m.StoreReply, {"ok": False, "error": "x", "refused": {"١": "bad"}}, "refused"),
    (m.StoreReply, {"ok": False, "error": "x", "refused": {str(i): "" for i in range(N + 1)}}, "refused"),
    (m.StoreReply, {"ok": True, "confirmation": CONF.to_json(), "timing": {"verify": "fast"}}, "timing"),
    (m.StoreReply, {"ok": True, "confirmation": CONF.to_json(), "timing": {"v": 10 ** 400}}, "timing"),
    (m.StoreReply, {"ok": "yes"}, "ok"),
    (m.StoreReply, {"ok": False, "error": ["no"]}, "error"),
    (m.StoreReply, {"error": "x"}, "ok"),
    # GET_METADATA, BLOB_STATUS, GET_CERT, GET_PROOF
    (m.GetMetadataRequest, {}, "blob_id"),
    (m.BlobStatusRequest, {"blob_id": 5}, "blob_id"),
    (m.GetCertRequest, {"blob_id": "ab"}, "blob_id"),
    (m.GetProofRequest, {"blob_id": "g" * 64}, "blob_id"),
    (m.BlobReply, {"ok": False, "error": "not found", "invalid": "true"}, "invalid"),
    (m.BlobReply, {"ok": False, "error": 5}, "error"),
    # GET_SLIVER
    (m.GetSliverRequest, _with(SLIVER, pair=N), "pair"),
    (m.GetSliverRequest, _with(SLIVER, pair=-1), "pair"),
    (m.GetSliverRequest, _with(SLIVER, pair="1"), "pair"),
    (m.GetSliverRequest, _with(SLIVER, kind="tertiary"), "kind"),
    (m.GetSliverRequest, _with(SLIVER, kind=_DROP), "kind"),
    # GET_RECOVERY
    (m.RecoveryRequest, _with(RECOVERY, axis="diagonal"), "axis"),
    (m.RecoveryRequest, _with(RECOVERY, pair=N), "pair"),
    (m.RecoveryRequest, _with(RECOVERY, targets=[N]), "targets"),
    (m.RecoveryRequest, _with(RECOVERY, targets=list(range(N)) * 2), "targets"),
    (m.RecoveryRequest, _with(RECOVERY, targets={"0": 1}), "targets"),
    (m.RecoveryRequest, _with(RECOVERY, targets=_DROP), "targets"),
    (m.RecoveryReply, {"ok": True}, "count"),
    (m.RecoveryReply, {"ok": True, "count": N + 1}, "count"),
    # BLOB_STATUS reply
    (m.BlobStatusReply, _with(STATUS, shards=[N]), "shards"),
    (m.BlobStatusReply, _with(STATUS, shards=list(range(N)) + [1]), "shards"),
    (m.BlobStatusReply, _with(STATUS, certified=_DROP), "certified"),
    (m.BlobStatusReply, _with(STATUS, invalid=1), "invalid"),
    (m.BlobStatusReply, _with(STATUS, end_epoch=-3), "end_epoch"),
    # LIST_BLOBS reply
    (m.ListBlobsReply, {"ok": True}, "blobs"),
    (m.ListBlobsReply, {"ok": True, "blobs": [_with(LISTING, blob_id=HEX)]}, "blob_id"),
    (m.ListBlobsReply, {"ok": True, "blobs": [_with(LISTING, shards=[N])]}, "shards"),
    (m.ListBlobsReply, {"ok": True, "blobs": [_with(LISTING, certified=_DROP)]}, "certified"),
    (m.ListBlobsReply, {"ok": True, "blobs": [LISTING] * (m.MAX_BLOBS_LISTED + 1)}, "blobs"),
    (m.ListBlobsReply, {"ok": True, "blobs": [5]}, "object"),
    # DELETE
    (m.DeleteRequest, _with(DELETE, signature="ab" * 63), "signature"),
    (m.DeleteRequest, _with(DELETE, signature="xy" * 64), "signature"),
    (m.DeleteRequest, _with(DELETE, nonce="ab" * 17), "nonce"),
    (m.DeleteRequest, _with(DELETE, nonce=_DROP), "nonce"),
    (m.DeleteRequest, _with(DELETE, epoch=False), "epoch"),
    (m.DeleteRequest, _with(DELETE, epoch=-1), "epoch"),
    (m.Reply, {"ok": None}, "ok"),
    # NODE_INFO reply
    (m.NodeInfoReply, _with(INFO, peer_id=_DROP), "peer_id"),
    (m.NodeInfoReply, _with(INFO, live="all"), "live"),
    (m.NodeInfoReply, _with(INFO, live=[PEER] * (m.MAX_LIVE_LISTED + 1)), "live"),
    (m.NodeInfoReply, _with(INFO, shards=[N]), "shards"),
    (m.NodeInfoReply, _with(INFO, epoch="2"), "epoch"),
    (m.NodeInfoReply, _with(INFO, error="x"), "error"),
    # PUT_CERT, PUT_PROOF replies
    (m.NewReply, {"ok": True}, "new"),
    (m.NewReply, {"ok": True, "new": "yes"}, "new"),
    # LIST_CERTS reply
    (m.ListCertsReply, {"ok": True, "certs": [[HEX]]}, "certs"),
    (m.ListCertsReply, {"ok": True, "certs": [[HEX, -1, 0]]}, "end_epoch"),
    (m.ListCertsReply, {"ok": True, "certs": [["ab", 1, 0]]}, "blob_id"),
    (m.ListCertsReply, {"ok": True, "certs": [[HEX, 1, True]]}, "epoch"),
    (m.ListCertsReply, {"ok": True, "certs": "all"}, "certs"),
    (m.ListCertsReply, {"ok": True, "certs": [[HEX, 1, 0]] * (m.MAX_CERTS_LISTED + 1)}, "certs"),
    (m.ListCertsReply, {"ok": True, "invalid": [HEX] * (m.MAX_PROOFS_LISTED + 1)}, "invalid"),
    (m.ListCertsReply, {"ok": True, "invalid": [5]}, "invalid"),
    # CONFIRM
    (m.ConfirmRequest, _with(CONFIRM, end_epoch=_DROP), "end_epoch"),
    (m.ConfirmRequest, _with(CONFIRM, epoch=1.5), "epoch"),
    (m.ConfirmRequest, _with(CONFIRM, blob_id=None), "blob_id"),
    (m.ConfirmRequest, _with(CONFIRM, payment="cash"), "payment"),
    (m.ConfirmReply, {"ok": True}, "confirmation"),
    (m.ConfirmReply, {"ok": True, "confirmation": "signed"}, "confirmation"),
]


@pytest.mark.parametrize("cls, obj, word", MALFORMED, ids=lambda x: x.__name__ if isinstance(x, type) else "")
def test_malformed_messages_are_refused_naming_the_field(cls, obj, word):
    with pytest.raises(ProtocolError, match=word):
        cls.from_json(obj, n_shards=N)


def test_not_an_object_is_refused():
    for cls in (m.StoreRequest, m.GetSliverRequest, m.BlobReply, m.StoreReply, m.NodeInfoReply, m.ListBlobsRequest):
        with pytest.raises(ProtocolError):
            cls.from_json([1, 2], n_shards=N)


@pytest.mark.parametrize("build, word", [
    (lambda: m.StoreRequest(BID[:31], 1, 2, ()), "blob_id"),
    (lambda: m.StoreRequest(BID, -1, 2, ()), "epoch"),
    (lambda: m.StoreRequest(BID, 1, True, ()), "end_epoch"),
    (lambda: m.StoreRequest(BID, 1, 2, (1, 1)), "pairs"),
    (lambda: m.StoreRequest(BID, 1, 2, (1,)).check(1), "pairs"),
    (lambda: m.GetSliverRequest(BID, 0, "tertiary"), "kind"),
    (lambda: m.RecoveryRequest(BID, 0, "primary", (-1,)), "targets"),
    (lambda: m.DeleteRequest(BID, 1, b"x" * 63, NONCE), "signature"),
    (lambda: m.DeleteRequest(BID, 1, SIG, b"n"), "nonce"),
    (lambda: m.ConfirmRequest(BID.hex(), 1, 2), "blob_id"),
    (lambda: m.Reply(False), "error"),
    (lambda: m.Reply(True, "but"), "error"),
    (lambda: m.StoreReply(True), "confirmation"),
    (lambda: m.StoreReply(False, "x", CONF), "confirmation"),
    (lambda: m.BlobStatusReply(True, None, (1,), "yes"), "certified"),
    (lambda: m.ListBlobsReply(True, None, ({"blob_id": "x"},)), "blobs"),
    (lambda: m.ListCertsReply(True, None, (), (b"short",)), "invalid"),
    (lambda: m.NodeInfoReply(True, None, {"epoch": 1}), "peer_id"),
    (lambda: m.NewReply(True), "new"),
])
def test_an_invalid_message_cannot_be_built(build, word):
    with pytest.raises(ProtocolError, match=word):
        build()


def test_messages_are_frozen():
    req = m.GetSliverRequest(BID, 1, "primary")
    with pytest.raises(AttributeError):
        req.pair = 2  # type: ignore[misc]


def test_core_messages_load_no_network_stack():
    import subprocess
    import sys

    code = ("import sys, p2pwalrus.core.messages; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('libp2p', 'trio', 'multiaddr')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ}).stdout
    assert out.strip() == "[]"


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=70) | st.sampled_from([HEX, blob_id_to_str(BID), PEER, "primary", "secondary"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=int(os.environ.get("P2PWALRUS_FUZZ_EXAMPLES", 300)), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(st.sampled_from(CASES), st.data())
def test_fuzz_from_json_returns_a_message_or_refuses(case, data):
    """Mutations of every valid message: each field dropped or replaced by any JSON value."""
    message, wire = case
    obj = dict(wire)
    for key in data.draw(st.lists(st.sampled_from(sorted(obj) or ["x"]), max_size=3)):
        if data.draw(st.booleans()):
            obj.pop(key, None)
        else:
            obj[key] = data.draw(_json_values)
    try:
        got = type(message).from_json(obj, n_shards=N)
    except ProtocolError:
        return
    # What parses builds again, and speaks the same JSON.
    assert type(got).from_json(json.loads(json.dumps(got.to_json())), n_shards=N) == got


def test_the_first_bad_field_in_wire_order_is_the_one_named():
    """Headers are checked in the order they are sent (blob_id first), as the handlers did."""
    for cls, obj in ((m.GetSliverRequest, {"blob_id": 5}), (m.RecoveryRequest, {"blob_id": 5}),
                     (m.StoreRequest, {"blob_id": 5, "pairs": "x"}), (m.DeleteRequest, {"blob_id": 5}),
                     (m.ConfirmRequest, {"blob_id": 5})):
        with pytest.raises(ProtocolError, match="blob_id"):
            cls.from_json(obj, n_shards=N)
    with pytest.raises(ProtocolError, match="'epoch'"):
        m.StoreRequest.from_json({"blob_id": HEX, "pairs": "x"}, n_shards=N)


async def test_the_client_checks_each_reply_at_the_boundary():
    """Client.request / request_with_blob send the message's JSON over the dict transport and
    give back the reply class, or a ProtocolError naming the field a node got wrong."""
    from p2pwalrus.client.calls import Calls

    class Scripted(Calls):
        net = type("Net", (), {"n_shards": N})()

        def __init__(self, reply):
            self.reply, self.sent = reply, []

        async def call(self, peer_id, protocol, header, **kw):
            self.sent.append((protocol, header))
            return self.reply

        async def call_with_blob(self, peer_id, protocol, header, max_size, timeout=10.0, into=None):
            self.sent.append((protocol, header))
            return self.reply, (b"x" if self.reply.get("ok") else None)

    good = Scripted({"ok": True, "shards": [1], "certified": True, "invalid": False, "end_epoch": 3})
    reply = await good.request("peer", m.BlobStatusRequest(BID))
    assert reply == m.BlobStatusReply(True, None, (1,), True, False, 3)
    assert good.sent == [(protocols.BLOB_STATUS, {"blob_id": HEX})]
    with pytest.raises(ProtocolError, match="shards"):
        await Scripted({"ok": True, "shards": [N], "certified": True, "invalid": False}).request(
            "peer", m.BlobStatusRequest(BID))
    reply, raw = await Scripted({"ok": False, "error": "invalid", "invalid": True}).request_with_blob(
        "peer", m.GetSliverRequest(BID, 1, "primary"), 100)
    assert reply.invalid is True and raw is None
    with pytest.raises(ProtocolError, match="invalid"):
        await Scripted({"ok": True, "invalid": "no"}).request_with_blob("peer", m.GetCertRequest(BID), 100)
