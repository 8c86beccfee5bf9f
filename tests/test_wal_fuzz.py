"""Fuzzing the ledger's parsers of a peer's JSON (orders, votes, certificates, saved state):
each returns a typed value or refuses with InvalidOrderError (a ProtocolError), never
anything else. The strategies are test_fuzz_parsers.py's."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from p2pwalrus.core.wal.committee import committee_from_genesis
from p2pwalrus.core.wal.ledger import Ledger
from p2pwalrus.core.wal.orders import Certificate, InvalidOrderError, Order, SignedOrder, make_certificate
from p2pwalrus.errors import ProtocolError, StorageError
from p2pwalrus.p2p import rpc
from p2pwalrus.node.ledger_store import LedgerStore

from .test_fuzz_parsers import FUZZ, JSON_VALUES, mutated_json
from .wal_helpers import address, genesis_for, key, order, votes

NODES = [key(i) for i in range(1, 5)]
USERS = [key(i) for i in range(100, 102)]
G = genesis_for(NODES, USERS)
SIGNED = order(G, USERS[0], 3, address(USERS[1]), 5)
CERT = make_certificate(SIGNED, votes(SIGNED, NODES))


def _parse(parser, data: bytes):
    try:
        obj = rpc.parse_json_header(data)  # what a handler does with a peer's frame first
        return parser(obj)
    except ProtocolError:  # InvalidOrderError is one
        return None


def _nested(path: tuple[str, ...]):
    """Mutations of the certificate's JSON at one level (``path`` into it)."""
    base = CERT.to_json()
    inner = base
    for k in path:
        inner = inner[k]

    def put(mutated: bytes):
        try:
            new_inner = json.loads(mutated)
        except (ValueError, RecursionError):  # deep nesting: sent as it is (parse_json_header refuses it)
            return mutated
        doc = json.loads(json.dumps(base))
        target = doc
        for k in path[:-1]:
            target = target[k]
        if path:
            target[path[-1]] = new_inner
        else:
            doc = new_inner
        try:
            return json.dumps(doc).encode()
        except RecursionError:
            return mutated

    return mutated_json(json.dumps(inner).encode()).map(put)


@FUZZ
@given(st.one_of(st.binary(max_size=256), _nested(()), _nested(("signed",)), _nested(("signed", "order")),
                 JSON_VALUES.map(lambda v: json.dumps({"signed": SIGNED.to_json(), "votes": v}).encode())))
def test_fuzz_ledger_certificates(data):
    cert = _parse(Certificate.from_json, data)
    if cert is not None:
        try:
            cert.check(committee_from_genesis(G))
        except InvalidOrderError:
            pass


@FUZZ
@given(st.one_of(st.binary(max_size=256), mutated_json(json.dumps(SIGNED.order.to_json()).encode())))
def test_fuzz_ledger_orders(data):
    _parse(Order.from_json, data)
    _parse(SignedOrder.from_json, data)


@FUZZ
@given(st.one_of(st.binary(max_size=256), mutated_json(json.dumps(Ledger.from_genesis(G).to_json()).encode())))
def test_fuzz_saved_ledger_state(tmp_path_factory, data):
    # A damaged state file (any bytes, with or without a checksum that matches) is refused with
    # a StorageError that says what to do: never a traceback.
    store = LedgerStore(tmp_path_factory.mktemp("s"), G)
    try:
        state = json.loads(data)
        body = json.dumps(state, sort_keys=True, separators=(",", ":")).encode()
        import hashlib

        data = json.dumps({"checksum": hashlib.blake2b(body, digest_size=16).hexdigest(), "state": state}).encode()
    except (ValueError, RecursionError):
        pass
    store.state_path.write_bytes(data)
    try:
        store.load_state()
    except StorageError:
        pass


def _message_forms():
    from .test_wal_messages import ROUND_TRIPS

    seen, out = set(), []
    for value, legacy in ROUND_TRIPS:
        if type(value) not in seen:
            seen.add(type(value))
            out.append((type(value), legacy))
    return out


@FUZZ
@given(st.data())
def test_fuzz_wal_messages(data):
    """Every envelope of core/wal/messages.py: a typed value or a ProtocolError, never anything
    else, from a mutation of its valid form (and a value parsed is one that builds again)."""
    from p2pwalrus.core.wal import messages

    cls, legacy = data.draw(st.sampled_from(_message_forms()))
    raw = data.draw(st.one_of(st.binary(max_size=64), mutated_json(json.dumps(legacy).encode())))
    value = _parse(cls.from_json, raw)
    if value is not None:
        assert type(value).from_json(json.loads(json.dumps(value.to_json()))) == value
    if "ok" in legacy:
        _parse(lambda obj: messages.parse_reply(obj, cls if cls is not messages.Refused else messages.SignReply), raw)
