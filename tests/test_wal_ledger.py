"""The WAL ledger's pure core: amounts, genesis, orders, FastPay's rules, conservation."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pwalrus.core.wal.amounts import AmountError, format_amount, parse_amount
from p2pwalrus.core.wal.genesis import GenesisError, make_genesis
from p2pwalrus.core.wal.ledger import Applied, Ledger, Missing, Refusal, RefusalCode, check_conservation
from p2pwalrus.core.wal.orders import (
    Certificate,
    InvalidOrderError,
    Order,
    OrderKind,
    SignedOrder,
    StoragePayload,
    make_certificate,
)

from .wal_helpers import address, committee_from_genesis, genesis_for, key, order, votes

NODES = [key(i) for i in range(1, 5)]
USERS = [key(i) for i in range(100, 104)]
G = genesis_for(NODES, USERS[:3])
COMMITTEE = committee_from_genesis(G)


# --- amounts ----------------------------------------------------------------------------


@pytest.mark.parametrize("text,frost", [("1.5WAL", 1_500_000_000), ("1.5 wal", 1_500_000_000), ("300FROST", 300),
                                         ("300", 300), ("0.000000001WAL", 1), ("2WAL", 2 * 10**9),
                                         ("18446744073709551615", 2**64 - 1), ("0.1WAL", 100_000_000)])
def test_amounts_parse_exactly_without_floats(text, frost):
    assert parse_amount(text) == frost


@pytest.mark.parametrize("text", ["1.5", "1.5FROST", "0.0000000001WAL", "-1", "1e9", "WAL", "", "18446744073709551616",
                                  "nan", "1,5WAL"])
def test_amounts_that_are_not_amounts_are_refused(text):
    with pytest.raises(AmountError):
        parse_amount(text)


def test_amounts_format_exactly():
    assert format_amount(1_500_000_000) == "1.5 WAL"
    assert format_amount(1) == "0.000000001 WAL"
    assert format_amount(-2 * 10**9) == "-2 WAL"
    assert format_amount(0) == "0 WAL"


# --- genesis ------------------------------------------------------------------------------


def test_genesis_hash_covers_every_field():
    base = dict(network="n", n_shards=10, genesis_time=1.0, epoch_length=60.0,
                committee=[(address(NODES[0]), 5)], accounts=[(address(USERS[0]), 7)])
    h = make_genesis(**base).hash()
    assert make_genesis(**base).hash() == h
    for change in [dict(network="m"), dict(n_shards=11), dict(genesis_time=2.0), dict(epoch_length=61.0),
                   dict(committee=[(address(NODES[0]), 6)]), dict(accounts=[(address(USERS[0]), 8)]),
                   dict(storage_price=1), dict(write_price=1), dict(parameters={"max_epochs_ahead": 5})]:
        assert make_genesis(**{**base, **change}).hash() != h, change


def test_genesis_refuses_duplicates_and_non_keys():
    with pytest.raises(GenesisError):
        make_genesis(network="n", n_shards=10, genesis_time=1, epoch_length=1, committee=[("not-a-key", 1)])
    with pytest.raises(GenesisError):
        make_genesis(network="n", n_shards=10, genesis_time=1, epoch_length=1, committee=[])
    with pytest.raises(GenesisError):
        make_genesis(network="n", n_shards=10, genesis_time=1, epoch_length=1,
                     committee=[(address(NODES[0]), 1), (address(NODES[0]), 2)])


def test_supply_is_balances_plus_stakes():
    assert G.supply() == 3 * 1000 + 4 * 500
    ledger = Ledger.from_genesis(G)
    check_conservation(ledger)


# --- orders ---------------------------------------------------------------------------------


def test_an_order_with_a_bad_signature_cannot_exist():
    signed = order(G, USERS[0], 0, address(USERS[1]), 5)
    with pytest.raises(InvalidOrderError, match="signature"):
        SignedOrder(signed.order, bytes(64))
    forged = Order(G.hash(), 0, address(USERS[0]), 0, address(USERS[1]), 6, OrderKind.TRANSFER)
    with pytest.raises(InvalidOrderError):
        SignedOrder(forged, signed.signature)
    assert SignedOrder.from_json(signed.to_json()) == signed


@pytest.mark.parametrize("change", [{"amount": 0}, {"amount": -1}, {"amount": 2**64}, {"sequence": -1},
                                    {"recipient": "x"}, {"kind": "burn"}, {"genesis": "00"}, {"payload": "00"},
                                    {"epoch": True}])
def test_malformed_orders_are_refused_at_the_boundary(change):
    obj = {**order(G, USERS[0], 0, address(USERS[1]), 5).order.to_json(), **change}
    with pytest.raises(InvalidOrderError):
        Order.from_json(obj)


def test_storage_payment_names_a_blob_and_no_recipient():
    pay = StoragePayload(bytes(range(32)), 5 << 20, 3, 8)
    signed = order(G, USERS[0], 0, "", 10, OrderKind.STORAGE, payload=pay.to_bytes())
    assert signed.order.storage == pay
    with pytest.raises(InvalidOrderError):
        order(G, USERS[0], 0, address(USERS[1]), 10, OrderKind.STORAGE, payload=pay.to_bytes())
    with pytest.raises(InvalidOrderError):
        StoragePayload(bytes(32), 1, 8, 8)


def test_certificate_needs_quorum_weight_of_distinct_members():
    signed = order(G, USERS[0], 0, address(USERS[1]), 5)
    weights = sorted(((COMMITTEE.weight(address(k)), k) for k in NODES), key=lambda x: -x[0])
    heavy = [k for _, k in weights]
    # The fewest heaviest nodes that make a quorum, and one fewer (not a quorum).
    need = next(i for i in range(1, 5) if COMMITTEE.is_quorum(sum(w for w, _ in weights[:i])))
    make_certificate(signed, votes(signed, heavy[:need])).check(COMMITTEE)
    with pytest.raises(InvalidOrderError, match="needs"):
        make_certificate(signed, votes(signed, heavy[:need - 1])).check(COMMITTEE)
    outsider = votes(signed, [USERS[3]])
    with pytest.raises(InvalidOrderError, match="not a committee member"):
        make_certificate(signed, votes(signed, heavy[:need]) + outsider).check(COMMITTEE)
    other = order(G, USERS[0], 0, address(USERS[1]), 6)
    with pytest.raises(InvalidOrderError, match="does not hold"):
        Certificate(signed, tuple(sorted(votes(other, heavy), key=lambda v: v.authority))).check(COMMITTEE)
    with pytest.raises(InvalidOrderError, match="distinct"):
        Certificate(signed, tuple(votes(signed, heavy[:1]) * 2))
    cert = make_certificate(signed, votes(signed, heavy))
    assert Certificate.from_json(cert.to_json()) == cert


def test_committee_quorum_is_walrus_rule_and_one_node_weighs_at_most_f():
    assert COMMITTEE.n_shards == 10 and sum(w for _, w in COMMITTEE.weights) == 10
    assert COMMITTEE.is_quorum(7) and not COMMITTEE.is_quorum(6)
    assert max(w for _, w in COMMITTEE.weights) <= 3


# --- FastPay's rules ------------------------------------------------------------------------


def certify(signed):
    return make_certificate(signed, votes(signed, NODES))


def test_authority_signs_only_by_fastpays_rules():
    ledger = Ledger.from_genesis(G)
    a, b = address(USERS[0]), address(USERS[1])
    first = order(G, USERS[0], 0, b, 600)
    assert ledger.handle_order(first, COMMITTEE) is True
    assert ledger.handle_order(first, COMMITTEE) is False  # the identical order: signed again
    with pytest.raises(Refusal) as exc:
        ledger.handle_order(order(G, USERS[0], 0, b, 601), COMMITTEE)
    assert exc.value.code is RefusalCode.SEQUENCE_USED and "locked" in str(exc.value)
    with pytest.raises(Refusal) as exc:
        ledger.handle_order(order(G, USERS[0], 1, b, 1), COMMITTEE)
    assert exc.value.code is RefusalCode.SEQUENCE_AHEAD
    with pytest.raises(Refusal) as exc:
        ledger.handle_order(order(G, USERS[3], 0, b, 1), COMMITTEE)
    assert exc.value.code is RefusalCode.UNKNOWN_ACCOUNT
    with pytest.raises(Refusal) as exc:
        ledger.handle_order(order(G, USERS[1], 0, a, 1001), COMMITTEE)
    assert exc.value.code is RefusalCode.INSUFFICIENT_BALANCE and exc.value.details["balance"] == 1000
    with pytest.raises(Refusal) as exc:
        ledger.handle_order(order(G, USERS[1], 0, a, 1, epoch=1), COMMITTEE)
    assert exc.value.code is RefusalCode.WRONG_EPOCH
    other = genesis_for(NODES, USERS[:3], name="elsewhere")
    with pytest.raises(Refusal) as exc:
        ledger.handle_order(order(other, USERS[1], 0, a, 1), COMMITTEE)
    assert exc.value.code is RefusalCode.WRONG_NETWORK
    assert ledger.apply(certify(first), COMMITTEE) == Applied(new=True)
    assert ledger.apply(certify(first), COMMITTEE) == Applied(new=False)
    assert ledger.account(a).balance == 400 and ledger.account(a).next_sequence == 1 and ledger.account(a).pending is None
    assert ledger.account(b).balance == 1600
    with pytest.raises(Refusal) as exc:
        ledger.handle_order(order(G, USERS[0], 0, b, 600), COMMITTEE)
    assert exc.value.code is RefusalCode.SEQUENCE_USED
    check_conservation(ledger)


def test_certificate_ahead_reports_the_missing_sequences_and_applies_after_them():
    ledger = Ledger.from_genesis(G)
    b = address(USERS[1])
    certs = [certify(order(G, USERS[0], s, b, 10)) for s in range(4)]
    assert ledger.apply(certs[3], COMMITTEE) == Missing(address(USERS[0]), 0, 2)
    for c in certs[:3]:
        assert ledger.apply(c, COMMITTEE) == Applied(True)
    assert ledger.apply(certs[3], COMMITTEE) == Applied(True)
    assert ledger.account(b).balance == 1040
    check_conservation(ledger)


def test_stake_and_unstake_move_wal_between_balance_and_stake():
    ledger = Ledger.from_genesis(G)
    a, node = address(USERS[0]), address(NODES[2])
    with pytest.raises(Refusal) as exc:
        ledger.handle_order(order(G, USERS[0], 0, address(USERS[1]), 5, OrderKind.STAKE), COMMITTEE)
    assert exc.value.code is RefusalCode.NOT_A_NODE
    with pytest.raises(Refusal) as exc:
        ledger.handle_order(order(G, USERS[0], 0, node, 5, OrderKind.UNSTAKE), COMMITTEE)
    assert exc.value.code is RefusalCode.INSUFFICIENT_STAKE
    ledger.apply(certify(order(G, USERS[0], 0, node, 300, OrderKind.STAKE)), COMMITTEE)
    assert ledger.stakes_of(a) == {node: 300} and ledger.account(a).balance == 700
    assert ledger.stake_with(node) == 800
    ledger.apply(certify(order(G, USERS[0], 1, node, 300, OrderKind.UNSTAKE)), COMMITTEE)
    assert ledger.stakes_of(a) == {} and ledger.account(a).balance == 1000
    pay = StoragePayload(bytes(32), 1 << 20, 0, 5)
    ledger.apply(certify(order(G, USERS[0], 2, "", 50, OrderKind.STORAGE, payload=pay.to_bytes())), COMMITTEE)
    assert ledger.funds == {(0, 5): 50}
    check_conservation(ledger)


def test_saved_state_round_trips_with_pending_orders():
    ledger = Ledger.from_genesis(G)
    ledger.handle_order(order(G, USERS[0], 0, address(USERS[1]), 5), COMMITTEE)
    ledger.apply(certify(order(G, USERS[1], 0, address(NODES[0]), 9, OrderKind.STAKE)), COMMITTEE)
    again = Ledger.from_json(ledger.to_json(), G)
    assert again.to_json() == ledger.to_json()
    with pytest.raises(ValueError):
        Ledger.from_json(ledger.to_json(), genesis_for(NODES, USERS[:3], name="other"))


# --- the property: no double spend, conservation, convergence ------------------------------------

BYZANTINE = NODES[3]  # signs every order it is shown, whatever it signed before
HONEST = NODES[:3]


def _schedule_run(data):
    ledgers = {address(k): Ledger.from_genesis(G) for k in HONEST}
    keys = {address(k): k for k in NODES}
    orders: list[SignedOrder] = []
    got_votes: dict[bytes, dict] = {}
    certs: dict[tuple[str, int], dict[bytes, Certificate]] = {}
    all_certs: list[Certificate] = []
    believed = {address(u): 0 for u in USERS}

    def cert_at(sender, seq):
        found = certs.get((sender, seq))
        return next(iter(found.values())) if found else None

    def deliver(ledger, cert):
        # Confirm; a certificate ahead makes the authority pull the missing ones it can find.
        todo = [cert]
        while todo:
            result = ledger.apply(todo[-1], COMMITTEE)
            if isinstance(result, Missing):
                earlier = cert_at(result.sender, result.last)
                if earlier is None:
                    return
                todo.append(earlier)
            else:
                todo.pop()

    for _ in range(data.draw(st.integers(5, 60), label="steps")):
        step = data.draw(st.sampled_from(["order", "order", "vote", "vote", "vote", "certify", "confirm"]))
        if step == "order":
            u = data.draw(st.sampled_from(USERS))
            # Sometimes the sender signs again at an old sequence, or twice at one: double spends.
            seq = believed[address(u)] - data.draw(st.integers(0, 1))
            if seq < 0:
                continue
            for _ in range(data.draw(st.integers(1, 2))):
                to = data.draw(st.sampled_from([address(k) for k in USERS if k is not u]))
                orders.append(order(G, u, seq, to, data.draw(st.integers(1, 1200))))
        elif step == "vote" and orders:
            # One order shown to some authorities, in any order, some twice, the rest dropped.
            signed = data.draw(st.sampled_from(orders[-4:]))
            for node in data.draw(st.lists(st.sampled_from(NODES), min_size=1, max_size=6)):
                if node is not BYZANTINE:
                    try:
                        ledgers[address(node)].handle_order(signed, COMMITTEE)
                    except Refusal:
                        continue
                got_votes.setdefault(signed.order.digest, {})[address(node)] = votes(signed, [keys[address(node)]])[0]
        elif step == "certify":
            ready = [o for o in orders if COMMITTEE.is_quorum(COMMITTEE.weight_of(got_votes.get(o.order.digest, {})))]
            if ready:
                signed = data.draw(st.sampled_from(ready))
                cert = make_certificate(signed, got_votes[signed.order.digest].values())
                certs.setdefault((signed.order.sender, signed.order.sequence), {})[signed.order.digest] = cert
                all_certs.append(cert)
                believed[signed.order.sender] = max(believed[signed.order.sender], signed.order.sequence + 1)
        elif step == "confirm" and all_certs:
            cert = data.draw(st.sampled_from(all_certs))  # duplicates and any order
            deliver(ledgers[address(data.draw(st.sampled_from(HONEST)))], cert)
        for ledger in ledgers.values():
            check_conservation(ledger)
        for found in certs.values():
            assert len(found) == 1, "two certificates at one (sender, sequence)"
    # Every certificate reaches every honest authority at last: they agree.
    for ledger in ledgers.values():
        for cert in all_certs:
            deliver(ledger, cert)
        check_conservation(ledger)
    states = [ledger.to_json() for ledger in ledgers.values()]
    for s in states:
        for acct in s["accounts"].values():
            acct[2] = None  # pending votes differ by what each was shown; balances and sequences may not
    assert all(s == states[0] for s in states)
    voted = {}
    for o in orders:
        if got_votes.get(o.order.digest):
            voted.setdefault((o.order.sender, o.order.sequence), set()).add(o.order.digest)
    return {"certificates": len(certs), "contested": sum(len(d) > 1 for d in voted.values())}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_no_double_spend_and_conservation_over_random_schedules_with_a_byzantine_signer(data):
    _schedule_run(data)


def test_a_decided_epoch_state_gives_the_ledger_its_committee_by_shards_held():
    from types import SimpleNamespace

    from p2pwalrus.core.wal.committee import committee_from_state

    shards = [(0, 1, 2), (3, 4), (5, 6), (7, 8)]
    members = [SimpleNamespace(peer_id=address(k), shards=s) for k, s in zip(NODES, shards)]
    c = committee_from_state(SimpleNamespace(epoch=5, n_shards=9, committee=members))
    assert c.epoch == 5 and c.weight(address(NODES[0])) == 3 and c.weight(address(NODES[1])) == 2
    signed = order(G, USERS[0], 0, address(USERS[1]), 5, epoch=5)
    make_certificate(signed, votes(signed, NODES[:3])).check(c)  # 3 + 2 + 2 = 7 >= (2 * 9 + 1) / 3
    with pytest.raises(InvalidOrderError, match="epoch"):
        make_certificate(signed, votes(signed, NODES)).check(COMMITTEE)


@pytest.mark.parametrize("change", [dict(network="Bad Name"), dict(n_shards=0), dict(parameters={"Bad-Name": 1}),
                                    dict(parameters={"shard_cap": -1}), dict(storage_price=2 ** 64)])
def test_a_genesis_refuses_what_its_epoch_state_would_refuse(change):
    """One rule for what both say of a network (core/wal/fields.py): a genesis that no epoch
    state could follow is refused when the network file is read, not when a node starts."""
    from p2pwalrus.core.wal.epoch_state import InvalidEpochStateError, Prices, genesis_state

    base = dict(network="n", n_shards=10, genesis_time=1, epoch_length=1, committee=[(address(NODES[0]), 5)])
    with pytest.raises(GenesisError):
        make_genesis(**{**base, **change})
    with pytest.raises(InvalidEpochStateError):
        genesis_state(change.get("network", "n"), change.get("n_shards", 10), {address(NODES[0]): 5},
                      prices=Prices(change.get("storage_price", 0)), parameters=change.get("parameters"))
