"""Pricing, price votes and rewards (pure): Walrus's rules, exact to the FROST.

- cost: ``storage_price * units * epochs + write_price * units`` over 1 MiB units of the
  encoded size, rounded up;
- quorum-below: a reference definition over random votes and weights, and ``f`` shards'
  weight voting extreme prices cannot move the price outside what honest members voted;
- rewards: split by shards held, commission to the operator, the rest to stakers pro rata;
  the fund, the credits and the rollover always add up (and the ledger's total with them).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pwalrus.core import rs2
from p2pwalrus.core.wal.epoch_state import Prices, genesis_state, next_state
from p2pwalrus.core.wal.ledger import Ledger, check_conservation
from p2pwalrus.core.wal.pricing import (
    BYTES_PER_UNIT,
    PriceVote,
    decide_parameters,
    decide_prices,
    economics_for_next,
    epoch_fund,
    fund_take,
    is_quorum,
    quorum_below,
    settle_funds,
    split_rewards,
    storage_units,
    store_cost,
)
from tests.tendermint_sim import make_keys

PEERS = sorted(dict(make_keys(7, seed=42)))
U64 = (1 << 64) - 1


# ---------------------------------------------------------------- cost


def test_cost_is_walrus_formula_on_encoded_units():
    n = 10
    enc = rs2.EncodingConfig(n).encoded_length(1_000_000)
    units = -(-enc // BYTES_PER_UNIT)
    cost = store_cost(1000, 20, 1_000_000, n, 5)
    assert cost.encoded_length == enc and cost.units == units
    assert cost.total == 1000 * units * 5 + 20 * units
    ext = store_cost(1000, 20, 1_000_000, n, 3, write=False)
    assert ext.total == 1000 * units * 3 and ext.write == 0


def test_units_round_up():
    assert storage_units(1) == 1
    assert storage_units(BYTES_PER_UNIT) == 1
    assert storage_units(BYTES_PER_UNIT + 1) == 2
    # even an empty blob stores metadata on every shard: one unit
    assert store_cost(7, 3, 0, 10, 2).units == 1


def test_price_zero_costs_nothing():
    assert store_cost(0, 0, 1_000_000, 10, 100).total == 0


def test_encoded_length_matches_slivers():
    n, length = 10, 123_457
    cfg = rs2.EncodingConfig(n)
    s = cfg.symbol_size(length)
    assert cfg.encoded_length(length) == n * (cfg.primary_sliver_len(length) + cfg.secondary_sliver_len(length)) \
        + 64 * n * n
    assert s > 0


# ---------------------------------------------------------------- quorum below


def reference_quorum_below(votes, n):
    """The lowest price p such that the weight voting at or below p is a quorum (WAL.md)."""
    for p in sorted({v for v, _ in votes}):
        if is_quorum(sum(w for v, w in votes if v <= p), n):
            return p
    return None


def test_quorum_below_examples():
    # 4 nodes of 1 shard (n=4, f=1): drop the highest votes while 3 shards remain: 30
    assert quorum_below([(10, 1), (20, 1), (30, 1), (40, 1)], 4) == 30
    # the one high voter alone cannot raise it; the one low voter cannot lower it below honest ones
    assert quorum_below([(10, 1), (10, 1), (10, 1), (10**12, 1)], 4) == 10
    assert quorum_below([(0, 1), (10, 1), (10, 1), (10, 1)], 4) == 10
    # weights: a member of 7 of 10 shards is a quorum alone
    assert quorum_below([(5, 7), (100, 3)], 10) == 5


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 20)), min_size=1, max_size=12))
def test_quorum_below_matches_reference(votes):
    n = sum(w for _, w in votes)
    assert quorum_below(votes, n) == reference_quorum_below(votes, n)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_f_extreme_voters_cannot_move_price_outside_honest_range(data):
    n_members = data.draw(st.integers(4, 12))
    weights = data.draw(st.lists(st.integers(1, 8), min_size=n_members, max_size=n_members))
    n = sum(weights)
    f = (n - 1) // 3
    # Byzantine: a set of members weighing at most f; honest: the rest
    order = data.draw(st.permutations(range(n_members)))
    byz, w = set(), 0
    for i in order:
        if w + weights[i] <= f and data.draw(st.booleans()):
            byz.add(i)
            w += weights[i]
    honest_votes = {i: data.draw(st.integers(0, 10**9)) for i in range(n_members) if i not in byz}
    extreme = data.draw(st.sampled_from([0, U64, "mixed"]))
    votes = []
    for i in range(n_members):
        if i in byz:
            v = extreme if extreme != "mixed" else data.draw(st.sampled_from([0, U64]))
        else:
            v = honest_votes[i]
        votes.append((v, weights[i]))
    price = quorum_below(votes, n)
    assert price == reference_quorum_below(votes, n)
    assert min(honest_votes.values()) <= price <= max(honest_votes.values())


def test_decide_prices_missing_vote_keeps_current_price():
    weights = {p: 1 for p in PEERS[:4]}
    votes = {PEERS[0]: PriceVote(50, 5), PEERS[1]: PriceVote(50, 5), PEERS[2]: PriceVote(50, 5)}
    # three of four vote 50; the fourth keeps the current 100: quorum below is 50
    assert decide_prices(weights, 4, votes, Prices(100, 10)) == (50, 5)
    # nobody votes: unchanged
    assert decide_prices(weights, 4, {}, Prices(100, 10)) == (100, 10)


def test_parameter_change_needs_quorum():
    weights = {p: 1 for p in PEERS[:4]}
    cur = {"max_epochs_ahead": 1000}
    two = {PEERS[0]: {"max_epochs_ahead": 50}, PEERS[1]: {"max_epochs_ahead": 50}}
    assert decide_parameters(weights, 4, cur, two) == cur
    three = {**two, PEERS[2]: {"max_epochs_ahead": 50}}
    assert decide_parameters(weights, 4, cur, three) == {"max_epochs_ahead": 50}


# ---------------------------------------------------------------- funds and rewards


def test_fund_take_splits_evenly_first_gets_remainder():
    assert [fund_take(3, 6, 100, e) for e in (2, 3, 4, 5, 9)] == [0, 34, 67, 100, 100]


def test_split_rewards_example():
    a, b, c, s1, s2 = PEERS[:5]
    split = split_rewards(1000, 10, {a: 5, b: 3, c: 2}, {a: {a: 100, s1: 300}, b: {b: 1}, c: {}},
                          commission_bps=1000)
    # a: 500, 50 commission to a, 450 split 1:3 -> a 112 (+50), s1 337 (1 rolls over)
    # b: 300, only staker b: 30 + 270
    # c: 200, no stakers: all to the operator c
    assert split.by_node == {a: 500, b: 300, c: 200}
    assert split.credits == {a: 50 + 112, s1: 337, b: 300, c: 200}
    assert split.rollover == 1
    assert split.paid + split.rollover == split.fund


def test_node_that_held_nothing_earns_nothing():
    a, b = PEERS[:2]
    split = split_rewards(1000, 10, {a: 5, b: 0}, {a: {a: 1}, b: {b: 1}})
    assert split.credits == {a: 500}
    assert split.rollover == 500


accounts = st.sampled_from(PEERS)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_rewards_and_funds_conserve_every_frost(data):
    n_nodes = data.draw(st.integers(1, 6))
    nodes = PEERS[:n_nodes]
    n_shards = data.draw(st.integers(n_nodes, 40))
    held_total = data.draw(st.integers(0, n_shards))
    cuts = sorted(data.draw(st.lists(st.integers(0, held_total), min_size=n_nodes - 1, max_size=n_nodes - 1)))
    bounds = [0, *cuts, held_total]
    held = {p: bounds[i + 1] - bounds[i] for i, p in enumerate(nodes)}
    stakes = {p: data.draw(st.dictionaries(accounts, st.integers(0, 10**15), max_size=4)) for p in nodes}
    bps = data.draw(st.one_of(st.integers(0, 10_000), st.dictionaries(st.sampled_from(nodes), st.integers(0, 10_000))))
    funds = data.draw(st.dictionaries(
        st.tuples(st.integers(0, 8), st.integers(1, 6)).map(lambda t: (t[0], t[0] + t[1])),
        st.integers(1, 10**15), max_size=6))
    epoch = data.draw(st.integers(0, 10))
    fund = epoch_fund(funds, epoch)
    split = split_rewards(fund, n_shards, held, stakes, bps)
    assert all(v > 0 for v in split.credits.values())
    assert split.paid + split.rollover == fund and split.rollover >= 0
    after = settle_funds(funds, epoch, split.paid)
    assert sum(after.values()) == sum(funds.values()) - split.paid
    assert all(v > 0 for v in after.values())  # nothing owed is overdrawn
    assert all(start > epoch for start, _ in after)  # nothing left for epochs already paid out
    # the next epoch's fund holds at least what rolled over
    assert epoch_fund(after, epoch + 1) >= split.rollover


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10**12), st.integers(0, 10**12))
def test_settle_funds_overdraw_leaves_exact_total(have, paid):
    after = settle_funds({(0, 3): have}, 0, paid)
    assert sum(after.values()) == have - paid


def test_ledger_apply_rewards_conserves_and_applies_once():
    from tests.wal_helpers import address, genesis_for, key

    nodes, users = [key(i) for i in range(4)], [key(100)]
    g = genesis_for(nodes, users, balance=10_000, stake=500)
    ledger = Ledger.from_genesis(g)
    user = address(users[0])
    # as a confirmed storage payment would: 900 FROST from the user into the fund of epochs [0, 3)
    ledger.accounts[user] = ledger.accounts[user].__class__(10_000 - 900, 1, None)
    ledger.funds[(0, 3)] = 900
    check_conservation(ledger)
    credits = {address(nodes[0]): 100, address(nodes[1]): 150}
    assert ledger.apply_rewards(0, credits)
    assert not ledger.apply_rewards(0, credits)
    check_conservation(ledger)
    assert ledger.rewards_paid == 250
    assert ledger.account(address(nodes[1])).balance == 150
    assert sum(ledger.funds.values()) == 650
    saved = Ledger.from_json(ledger.to_json(), g)
    assert saved.rewarded_epoch == 0 and saved.rewards_paid == 250 and saved.funds == ledger.funds


def test_economics_wire_into_next_state():
    wal = 10**9
    g = genesis_state("testnet", 16, {p: 100 * wal for p in PEERS[:4]}, prices=Prices(1000, 20),
                      parameters={"commission_bps": 500})
    votes = {p: PriceVote(2000, 40) for p in PEERS[:3]}
    votes[PEERS[3]] = PriceVote(U64, U64)  # one member (f of 16 shards at most) votes absurdly high
    stakes = {(p, p): 100 * wal for p in PEERS[:4]}
    econ = economics_for_next(g, price_votes=votes, funds={(0, 2): 16_000}, stakes=stakes)
    nxt = next_state(g, g.stakes, **econ)
    assert nxt.prices == Prices(2000, 40)
    credits = dict(nxt.reward_credits)
    assert sum(credits.values()) == 8000  # epoch 0's half of the fund, 16 shards divide it exactly
    assert credits == {p: 8000 * len(g.shards_by_node[p]) // 16 for p in PEERS[:4] if g.shards_by_node[p]}
    # the signature stays compatible: without economics, prices carry over and nothing is credited
    plain = next_state(g, g.stakes)
    assert plain.prices == g.prices and plain.reward_credits == ()


if __name__ == "__main__":
    pytest.main([__file__, "-q"])


def test_challenge_view_takes_the_shards_of_a_node_that_answered_no_challenge():
    from types import SimpleNamespace

    from p2pwalrus.core.wal.pricing import rewards_for_epoch
    from p2pwalrus.node.vote_service import ChallengeView

    wal = 10**9
    g = genesis_state("testnet", 16, {p: 100 * wal for p in PEERS[:4]})
    a, b, c, d = PEERS[:4]
    import dataclasses

    repair = SimpleNamespace(challenge_epochs={})  # epoch of the clock -> holder -> answers in it
    view = ChallengeView(SimpleNamespace(repair=repair))
    at = [dataclasses.replace(g, epoch=e, prev_digest=bytes([1]) * 32) if e else g for e in range(6)]
    assert view(at[0]) == g.weights  # no challenge yet: every member counted whole
    repair.challenge_epochs[1] = {a: {"passed": 3, "failed": 0}, b: {"passed": 0, "failed": 2},
                                  c: {"passed": 1, "failed": 1}}
    held = view(at[1])
    assert held[b] == 0 and held[a] == g.weights[a] and held[c] == g.weights[c] and held[d] == g.weights[d]
    repair.challenge_epochs[1][b] = {"passed": 1, "failed": 2}
    assert view(at[1]) == held  # asked again for the same epoch (a later round): the same answer
    # the next epoch b answers again: it earns again
    repair.challenge_epochs[2] = {b: {"passed": 1, "failed": 0}}
    assert view(at[2])[b] == g.weights[b]
    # this node proposes for epoch 5 without having proposed for 4 (it learnt 4's state from the
    # others): b's passes of epoch 3 are no evidence for epoch 4, in which it answered nothing
    repair.challenge_epochs[3] = {b: {"passed": 5, "failed": 0}}
    repair.challenge_epochs[4] = {b: {"passed": 0, "failed": 3}}
    assert view(at[4])[b] == 0
    # what b would have earned rolls over; the others earn their share
    split = rewards_for_epoch(g, {(0, 1): 16_000}, {(p, p): 1 for p in PEERS[:4]}, held)
    assert b not in split.credits and split.rollover == 1000 * g.weights[b]
    assert split.credits[a] == 1000 * g.weights[a]


def test_each_node_its_own_commission_else_the_parameter():
    from p2pwalrus.core.wal.pricing import rewards_for_epoch

    wal = 10**9
    g = genesis_state("testnet", 16, {p: 100 * wal for p in PEERS[:4]}, parameters={"commission_bps": 1000})
    a, b, s1 = PEERS[0], PEERS[1], PEERS[5]
    stakes = {(s1, a): 1, (s1, b): 1}  # one outside staker with each of a and b; c and d have none
    split = rewards_for_epoch(g, {(0, 1): 16_000}, stakes, commissions={a: 5000})
    part_a, part_b = split.by_node[a], split.by_node[b]
    assert split.credits[a] == part_a // 2  # a voted 50%
    assert split.credits[b] == part_b // 10  # b did not: the parameter's 10%
    assert split.credits[s1] == part_a - part_a // 2 + part_b - part_b // 10
    assert split.paid + split.rollover == split.fund


def test_signed_node_vote_round_trips_and_refuses_tampering():
    from tests.wal_helpers import address, key

    from p2pwalrus.core.wal.votes import InvalidVoteError, NodeVote, SignedNodeVote, sign_node_vote

    k = key(7)
    v = NodeVote(bytes(32), address(k), 1, 10, 2, 0, (("max_epochs_ahead", 5),), 250)
    signed = sign_node_vote(k, v)
    assert SignedNodeVote.from_json(signed.to_json()) == signed
    obj = signed.to_json()
    obj["vote"]["commission_bps"] = 0
    with pytest.raises(InvalidVoteError):
        SignedNodeVote.from_json(obj)
    with pytest.raises(InvalidVoteError):
        NodeVote(bytes(32), address(k), 1, 10, 2, 0, (), 10_001)


def test_credits_are_capped_to_what_one_state_carries_and_the_rest_rolls_over():
    a = PEERS[0]
    stakers = {f"s{i:03d}": 1 + i for i in range(50)}  # (names need not be peer IDs for the split itself)
    split = split_rewards(10**9, 10, {a: 10}, {a: stakers}, max_credits=20)
    assert len(split.credits) == 20
    assert min(split.credits.values()) >= max(v for k, v in split_rewards(10**9, 10, {a: 10}, {a: stakers}).credits
                                               .items() if k not in split.credits)
    assert split.paid + split.rollover == split.fund


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_ledger_conserves_through_paid_stores_and_reward_epochs(data):
    """Real storage-payment certificates and decided reward credits in any interleaving:
    balances + stakes + funds stay the genesis supply, and rewards never exceed what was paid."""
    from p2pwalrus.core.wal.committee import committee_from_genesis
    from p2pwalrus.core.wal.orders import OrderKind, StoragePayload, make_certificate
    from p2pwalrus.core.wal.pricing import rewards_for_epoch
    from tests.wal_helpers import address, genesis_for, key, order, votes

    nodes, users = [key(i) for i in range(1, 5)], [key(300), key(301)]
    g = genesis_for(nodes, users, balance=10**12, stake=500, n_shards=10)
    committee = committee_from_genesis(g)
    ledger = Ledger.from_genesis(g)
    state = genesis_state(g.network, g.n_shards, {m.peer_id: m.stake for m in g.committee})
    seqs = {address(u): 0 for u in users}
    paid_in = 0
    for _ in range(data.draw(st.integers(1, 8))):
        if data.draw(st.booleans()):
            u = data.draw(st.sampled_from(users))
            start = state.epoch + data.draw(st.integers(0, 2))
            payload = StoragePayload(bytes(32), 1 << 20, start, start + data.draw(st.integers(1, 5)))
            amount = data.draw(st.integers(1, 10**9))
            signed = order(g, u, seqs[address(u)], "", amount, OrderKind.STORAGE, payload=payload.to_bytes())
            ledger.apply(make_certificate(signed, votes(signed, nodes)), committee)
            seqs[address(u)] += 1
            paid_in += amount
        else:
            split = rewards_for_epoch(state, ledger.funds, ledger.stakes)
            state = next_state(state, state.stakes, reward_credits=split.credits)
            assert ledger.apply_rewards(state.epoch - 1, dict(state.reward_credits))
        check_conservation(ledger)
        assert 0 <= ledger.rewards_paid <= paid_in
        assert all(v > 0 for v in ledger.funds.values())


def test_check_payment_rules():
    from p2pwalrus.core.wal.orders import Order, OrderKind, StoragePayload
    from p2pwalrus.core.wal.payments import PaymentError, check_payment
    from tests.wal_helpers import address, key

    n, length, blob = 10, 300_000, bytes(range(32))
    enc = rs2.EncodingConfig(n).encoded_length(length)
    prices = [(1000, 100)]
    store5 = store_cost(1000, 100, length, n, 5).total
    sender = address(key(9))

    def pay(amount, start, end, blob_id=blob, size=enc):
        return Order(bytes(32), 0, sender, 0, "", amount, OrderKind.STORAGE,
                     StoragePayload(blob_id, size, start, end).to_bytes())

    what = dict(blob_id=blob, unencoded_length=length, n_shards=n, prices=prices)
    assert check_payment(pay(store5, 10, 15), epoch=10, end_epoch=15, **what) == store5
    assert check_payment(pay(store5, 10, 15), epoch=11, end_epoch=14, **what) == store5  # within what was paid
    for bad, why in [(pay(store5, 10, 15, blob_id=bytes(32)), "another blob ID"),
                     (pay(store5, 10, 15, size=enc - 1), "encoded size"),
                     (pay(store5, 10, 14), "covers epochs"),
                     (pay(store5 - 1, 10, 15), "short"),
                     (pay(store5, 10, 16), "short"),  # six epochs named: all must be paid
                     (None, "must be paid for")]:
        with pytest.raises(PaymentError, match=why):
            check_payment(bad, epoch=10, end_epoch=15, **what)
    # an extension from epoch 15 to 20 pays the storage price of 5 epochs, no write price
    ext = store_cost(1000, 100, length, n, 5, write=False).total
    assert check_payment(pay(ext, 15, 20), epoch=12, end_epoch=20, extends_from=15, **what) == ext
    with pytest.raises(PaymentError, match="covers epochs"):
        check_payment(pay(ext, 16, 20), epoch=12, end_epoch=20, extends_from=15, **what)
    # across a price change, the cheaper of the accepted prices counts
    assert check_payment(pay(store5, 10, 15), epoch=10, end_epoch=15,
                         **{**what, "prices": [(1000, 100), (5000, 500)]}) == store5


def test_reward_credits_cannot_pay_more_than_the_funds_owe_the_epoch():
    from p2pwalrus.core.wal.pricing import check_reward_credits, rewards_for_epoch

    wal = 10**9
    g = genesis_state("testnet", 16, {p: 100 * wal for p in PEERS[:4]})
    funds = {(0, 2): 16_000}
    stakes = {(p, p): 1 for p in PEERS[:4]}
    honest = next_state(g, g.stakes, reward_credits=rewards_for_epoch(g, funds, stakes).credits)
    assert check_reward_credits(g, honest, funds) is None
    greedy = next_state(g, g.stakes, reward_credits={PEERS[0]: 8001})  # more than epoch 0's half
    assert "owe it 8000" in check_reward_credits(g, greedy, funds)
    # a validator that missed the payment refuses until it has it
    assert check_reward_credits(g, honest, {}) is not None


def test_challenge_view_takes_the_shards_of_a_member_down_at_the_epochs_end():
    """A member down at this node when the epoch ends held nothing for it; a node that sees
    less than a quorum of the weight live (cut off, or just restarted) is no evidence."""
    import dataclasses
    from types import SimpleNamespace

    from p2pwalrus.node.vote_service import ChallengeView

    wal = 10**9
    g = genesis_state("testnet", 16, {p: 100 * wal for p in PEERS[:4]})
    a, b, c, d = PEERS[:4]
    live = SimpleNamespace(peer_ids=lambda: [a, c, d])
    node = SimpleNamespace(repair=SimpleNamespace(challenge_epochs={}), members=SimpleNamespace(live=live), peer_id=a)
    view = ChallengeView(node)
    at = [dataclasses.replace(g, epoch=e, prev_digest=bytes([1]) * 32) if e else g for e in range(3)]
    held = view(at[0])
    assert held[b] == 0 and all(held[p] == g.weights[p] for p in (a, c, d))
    live.peer_ids = lambda: [a, b, c, d]
    assert view(at[0]) == held  # marked once per epoch: a later round gets the same answer
    assert view(at[1]) == g.weights  # b back before the next epoch's end: it earns again
    live.peer_ids = lambda: [a]  # a sees only itself: no quorum of weight, no evidence
    assert view(at[2]) == g.weights
