"""The WAL's wire messages (core/wal/messages.py): each round-trips through JSON to an equal
value in the form older peers send, and each malformed form is refused at parsing with a
ProtocolError that names the field (never a KeyError, TypeError or a half-built value)."""

from __future__ import annotations

import json

import pytest

from p2pwalrus.core.wal import messages as m
from p2pwalrus.core.wal.ledger import Refusal, RefusalCode
from p2pwalrus.core.wal.orders import OrderKind, make_certificate
from p2pwalrus.core.wal.votes import NodeVote, sign_node_vote
from p2pwalrus.errors import ProtocolError

from .wal_helpers import address, genesis_for, key, order, votes

NODES = [key(i) for i in range(1, 5)]
USERS = [key(100), key(101)]
GENESIS = genesis_for(NODES, USERS)
SIGNED = order(GENESIS, USERS[0], 0, address(USERS[1]), 5)
CERT = make_certificate(SIGNED, votes(SIGNED, NODES[:3]))
VOTE = votes(SIGNED, NODES[:1])[0]
NODE_VOTE = sign_node_vote(NODES[0], NodeVote(GENESIS.hash(), address(NODES[0]), 1_700_000_000, 3, 1,
                                              proposals=(("max_epochs_ahead", 20),)))
A, B = address(USERS[0]), address(USERS[1])
N0 = address(NODES[0])
DIGEST = "0123456789abcdef" * 2


def wire(obj: dict) -> dict:
    return json.loads(json.dumps(obj, separators=(",", ":")))


# (value, the dict older peers send for it)
ROUND_TRIPS = [
    (m.SignRequest(SIGNED), {"signed": SIGNED.to_json()}),
    (m.SignReply(VOTE), {"ok": True, "vote": VOTE.to_json()}),
    (m.ConfirmRequest(CERT), {"certificate": CERT.to_json()}),
    (m.ConfirmReply(True, 1), {"ok": True, "new": True, "next_sequence": 1}),
    (m.AccountRequest(A), {"address": A}),
    (m.AccountReply(N0, 0, GENESIS.hash(), True, -7, 1, SIGNED, ((N0, 50),), 0, (3, 1)),
     {"ok": True, "authority": N0, "epoch": 0, "genesis": GENESIS.hash().hex(), "known": True, "balance": -7,
      "next_sequence": 1, "pending": SIGNED.to_json(), "stakes": {N0: 50}, "staked_with": 0, "prices": [3, 1]}),
    (m.AccountReply(N0, 2, GENESIS.hash(), False, 0, 0, None, (), 9, None),
     {"ok": True, "authority": N0, "epoch": 2, "genesis": GENESIS.hash().hex(), "known": False, "balance": 0,
      "next_sequence": 0, "pending": None, "stakes": {}, "staked_with": 9}),
    (m.CertsRequest(A, 3, 64), {"sender": A, "first": 3, "count": 64}),
    (m.ReceivedRequest(B), {"recipient": B}),
    (m.CertsReply((CERT,)), {"ok": True, "certificates": [CERT.to_json()]}),
    (m.CertsReply(()), {"ok": True, "certificates": []}),
    (m.ReceivedReply(((A, 0), (A, 1))), {"ok": True, "received": [[A, 0], [A, 1]]}),
    (m.SummaryRequest(DIGEST), {"digest": DIGEST}),
    (m.SummaryRequest(), {}),
    (m.SummaryReply(same=True), {"ok": True, "same": True}),
    (m.SummaryReply(digest=DIGEST, accounts=((A, 2),)), {"ok": True, "digest": DIGEST, "accounts": [[A, 2]]}),
    (m.VoteRequest(), {}),
    (m.VoteReply(NODE_VOTE), {"ok": True, "vote": NODE_VOTE.to_json()}),
    (m.VoteReply(None), {"ok": True, "vote": None}),
    (m.ChainRequest(4), {"from": 4}),
    (m.ChainReply(2), {"ok": True, "count": 2}),
    (m.Refused("no"), {"ok": False, "error": "no"}),
    (m.Refused("gap", "missing", first=1, last=3), {"ok": False, "code": "missing", "error": "gap", "first": 1,
                                                     "last": 3}),
]


@pytest.mark.parametrize("value,legacy", ROUND_TRIPS, ids=lambda x: type(x).__name__)
def test_every_message_round_trips_in_the_form_older_peers_send(value, legacy):
    assert value.to_json() == legacy
    assert type(value).from_json(wire(legacy)) == value
    if "ok" in legacy:
        assert m.parse_reply(wire(legacy), type(value)) == value


def test_a_ledger_refusal_keeps_its_code_numbers_and_the_other_pending_order():
    other = order(GENESIS, USERS[0], 0, address(USERS[1]), 6)
    refusal = Refusal(RefusalCode.SEQUENCE_USED, "already used", next_sequence=0, pending=other.to_json())
    refused = m.Refused.from_refusal(refusal)
    assert refused.to_json() == {"ok": False, **refusal.to_json()}
    assert m.parse_reply(wire(refused.to_json()), m.SignReply) == refused
    assert refused.pending == other and refused.detail("next_sequence") == 0 and refused.code == "sequence_used"
    assert len(m.Refused.because("x" * 10_000).error) == m.MAX_ERROR


def legacy_of(cls) -> dict:
    return next(legacy for value, legacy in ROUND_TRIPS if type(value) is cls)


def changed(cls, **fields) -> dict:
    obj = json.loads(json.dumps(legacy_of(cls)))
    for name, value in fields.items():
        if value is KeyError:
            obj.pop(name)
        else:
            obj[name] = value
    return obj


# (message type, malformed JSON, words the error must hold): one or more per message
MALFORMED = [
    (m.SignRequest, changed(m.SignRequest, signed=KeyError), "signed"),
    (m.SignRequest, {"signed": {**SIGNED.to_json(), "signature": "00" * 64}}, "signature"),
    (m.SignReply, changed(m.SignReply, vote={"authority": A, "signature": "00"}), "64 bytes"),
    (m.SignReply, changed(m.SignReply, ok=False), "ok"),
    (m.ConfirmRequest, {"certificate": {"signed": SIGNED.to_json(), "votes": []}}, "votes"),
    (m.ConfirmReply, changed(m.ConfirmReply, new=1), "new"),
    (m.ConfirmReply, changed(m.ConfirmReply, next_sequence=True), "next_sequence"),
    (m.ConfirmReply, changed(m.ConfirmReply, next_sequence=-1), "next_sequence"),
    (m.AccountRequest, {"address": "../../etc/passwd"}, "peer ID"),
    (m.AccountRequest, {}, "address"),
    (m.AccountReply, changed(m.AccountReply, genesis="ab"), "genesis"),
    (m.AccountReply, changed(m.AccountReply, balance=2 ** 64), "balance"),
    (m.AccountReply, changed(m.AccountReply, known="yes"), "known"),
    (m.AccountReply, changed(m.AccountReply, stakes={"nobody": 1}), "stakes"),
    (m.AccountReply, changed(m.AccountReply, stakes={N0: -1}), "stakes"),
    (m.AccountReply, changed(m.AccountReply, prices=[1]), "prices"),
    (m.AccountReply, changed(m.AccountReply, prices=[1, False]), "prices"),
    (m.AccountReply, changed(m.AccountReply, authority=KeyError), "authority"),
    (m.CertsRequest, changed(m.CertsRequest, first=-1), "sequence"),
    (m.CertsRequest, changed(m.CertsRequest, count="5"), "count"),
    (m.CertsRequest, changed(m.CertsRequest, sender=5), "sender"),
    (m.ReceivedRequest, {"recipient": ""}, "recipient"),
    (m.CertsReply, {"ok": True, "certificates": [CERT.to_json()] * (m.CERT_PAGE + 1)}, "certificates"),
    (m.CertsReply, {"ok": True, "certificates": {}}, "certificates"),
    (m.ReceivedReply, {"ok": True, "received": [[A, 0]] * (m.MAX_RECEIVED + 1)}, "received"),
    (m.ReceivedReply, {"ok": True, "received": [[A, "0"]]}, "received"),
    (m.ReceivedReply, {"ok": True, "received": [[A]]}, "received"),
    (m.SummaryRequest, {"digest": "zz" * 16}, "digest"),
    (m.SummaryRequest, {"digest": DIGEST + "00"}, "digest"),
    (m.SummaryReply, {"ok": True, "same": 1}, "same"),
    (m.SummaryReply, {"ok": True, "digest": DIGEST, "accounts": [[A, True]]}, "accounts"),
    (m.SummaryReply, {"ok": True, "digest": DIGEST}, "accounts"),
    (m.VoteRequest, [], "object"),
    (m.VoteReply, {"ok": True, "vote": {"vote": NODE_VOTE.vote.to_json(), "signature": "00" * 64}}, "signature"),
    (m.ChainRequest, {"from": 0}, "from"),
    (m.ChainRequest, {"from": True}, "from"),
    (m.ChainRequest, {"from": 2 ** 64}, "from"),
    (m.ChainReply, {"ok": True, "count": m.MAX_LINKS_PER_REPLY + 1}, "links"),
    (m.ChainReply, {"ok": True, "count": -1}, "links"),
    (m.Refused, {"ok": False, "error": 5}, "error"),
    (m.Refused, {"ok": False, "error": "x", "balance": "lots"}, "balance"),
    (m.Refused, {"ok": False, "error": "x", "code": ""}, "code"),
    (m.Refused, {"ok": True, "error": "x"}, "ok"),
]


@pytest.mark.parametrize("cls,obj,words", MALFORMED, ids=lambda x: x.__name__ if isinstance(x, type) else None)
def test_a_malformed_message_is_refused_with_a_protocol_error_naming_the_field(cls, obj, words):
    with pytest.raises(ProtocolError, match=words):
        cls.from_json(obj)


@pytest.mark.parametrize("obj", [5, None, "ok", [], {"ok": "yes"}, {}])
def test_a_reply_that_is_neither_ok_nor_a_refusal_is_refused(obj):
    with pytest.raises(ProtocolError):
        m.parse_reply(obj, m.ConfirmReply)


def test_values_check_themselves_when_built_too():
    with pytest.raises(ProtocolError):
        m.ConfirmReply(True, -1)
    with pytest.raises(ProtocolError):
        m.SignRequest(SIGNED.to_json())
    with pytest.raises(ProtocolError):
        m.SummaryReply(same=True, digest=DIGEST)
    with pytest.raises(ProtocolError):
        m.CertsReply([CERT])
    with pytest.raises(ProtocolError):
        m.ReceivedReply(((A, -1),))
    with pytest.raises(ProtocolError):
        m.Refused("x", epoch=True)
    with pytest.raises(ProtocolError):
        m.AccountReply(N0, 0, b"short", True, 0, 0, None, (), 0, None)


def test_the_kinds_of_order_all_travel():
    for kind, recipient in [(OrderKind.STAKE, N0), (OrderKind.UNSTAKE, N0)]:
        signed = order(GENESIS, USERS[0], 1, recipient, 5, kind)
        assert m.SignRequest.from_json(wire(m.SignRequest(signed).to_json())).signed == signed


def test_the_wallet_and_the_epoch_view_stand_on_no_node_module():
    """The client speaks these messages without node code: the chain request is on the p2p
    floor (p2p/chain.py), atomic writes in p2pwalrus/durable.py (a fresh interpreter: this
    one has node modules loaded already)."""
    import subprocess
    import sys

    code = ("import sys, p2pwalrus.client.wallet, p2pwalrus.client.epochs, p2pwalrus.client.payments; "
            "print(sorted(m for m in sys.modules if m.startswith('p2pwalrus.node')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
