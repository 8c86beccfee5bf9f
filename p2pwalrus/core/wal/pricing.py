"""What storage costs, how the prices are voted and how an epoch's fund pays the holders (pure).

Walrus's rules (``../shared/WAL.md`` section 1, Walrus's ``system_state_inner.move`` and
``staking_inner.move``), in integers of FROST, never a float:

- **Cost.** Storage is billed on the *encoded* size (every shard's sliver pair and its copy
  of the metadata: :meth:`rs2.EncodingConfig.encoded_length`) in units of 1 MiB, rounded up:
  ``storage_price * units * epochs + write_price * units``. An extension pays the storage
  part for the added epochs only; deleting a blob gives nothing back.
- **Prices.** Every committee member votes a storage and a write price; the epoch's price is
  Walrus's ``quorum_below``: start from all ``n_shards`` of weight, take votes away from the
  highest price down while the weight left is still a quorum (``3w >= 2n + 1``); the price
  whose removal breaks the quorum is the answer, the lowest price that a quorum voted for at
  or below. Members weighing at most ``f`` shards cannot move it above the highest honest
  vote nor below the lowest one, whatever they vote.
- **Funds.** A storage payment goes into the fund of the epochs it covers, ``[start, end)``:
  each of those epochs gets ``amount // epochs``, the first also the remainder.
- **Rewards.** At the end of epoch ``e`` its share of every fund is split over the nodes by
  the shards they held in ``e`` (``fund * held // n_shards``); of a node's part, its
  commission (basis points) goes to its operator and the rest to the accounts staked with
  it, pro rata. Every division rounds down and what it leaves (and the part of a node that
  held nothing) rolls over to epoch ``e + 1``: nothing is created or lost, to the FROST.

Wiring into the decided epoch state goes through :func:`prices_for_next`,
:func:`rewards_for_epoch` and :func:`economics_for_next`, whose result is passed to
``epoch_state.next_state(prev, stakes, **economics)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..rs2 import EncodingConfig

BYTES_PER_UNIT = 1 << 20  # Walrus's BYTES_PER_UNIT_SIZE: 1 MiB of encoded size
BPS = 10_000  # basis points in one
COMMISSION_PARAMETER = "commission_bps"  # a decided parameter: every node's commission, in basis points
# Reward credits one decided state carries (about 70 bytes each of its 2 MiB): the largest are
# paid; the others roll over with the remainders (a staker that small is paid when its credits
# are among the largest, or once stakes are fewer).
MAX_REWARD_CREDITS = 10_000
MAX_COMMISSION_BPS = BPS


# ---------------------------------------------------------------- cost


def storage_units(encoded_length: int) -> int:
    """1 MiB units of encoded size, rounded up."""
    if type(encoded_length) is not int or encoded_length < 0:
        raise ValueError("an encoded length is a non-negative integer")
    return -(-encoded_length // BYTES_PER_UNIT)


@dataclass(frozen=True)
class StoreCost:
    """The cost of storing (or extending) one blob, and how it is made up."""

    unencoded_length: int
    encoded_length: int
    units: int
    epochs: int
    storage_price: int  # FROST per unit per epoch
    write_price: int  # FROST per unit, once per store (0 for an extension)

    @property
    def storage(self) -> int:
        return self.storage_price * self.units * self.epochs

    @property
    def write(self) -> int:
        return self.write_price * self.units

    @property
    def total(self) -> int:
        return self.storage + self.write

    def to_json(self) -> dict:
        return {"unencoded_length": self.unencoded_length, "encoded_length": self.encoded_length,
                "units": self.units, "epochs": self.epochs, "storage_price": self.storage_price,
                "write_price": self.write_price, "storage_cost": self.storage, "write_cost": self.write,
                "total": self.total}


def store_cost(storage_price: int, write_price: int, length: int, n_shards: int, epochs: int,
               *, write: bool = True) -> StoreCost:
    """``storage_price * units * epochs + write_price * units`` for a blob of ``length`` bytes
    on ``n_shards`` shards (``write=False``: an extension, which pays no write price)."""
    if type(epochs) is not int or epochs < 0:
        raise ValueError("epochs is a non-negative integer")
    for name, price in (("storage_price", storage_price), ("write_price", write_price)):
        if type(price) is not int or price < 0:
            raise ValueError(f"{name} is a non-negative integer of FROST")
    encoded = EncodingConfig(n_shards).encoded_length(length)
    return StoreCost(length, encoded, storage_units(encoded), epochs, storage_price,
                     write_price if write else 0)


def cost_for_prices(prices, length: int, n_shards: int, epochs: int, *, write: bool = True) -> StoreCost:
    """:func:`store_cost` at an epoch state's ``Prices`` (read by attribute)."""
    return store_cost(prices.storage_price_per_unit, prices.write_price_per_unit, length, n_shards, epochs,
                      write=write)


# ---------------------------------------------------------------- price votes


def is_quorum(weight: int, n_shards: int) -> bool:
    return 3 * weight >= 2 * n_shards + 1


def quorum_below(votes: Iterable[tuple[int, int]], n_shards: int) -> int:
    """Walrus's ``quorum_below`` over ``(value, weight)`` votes: the lowest value that a quorum
    of the ``n_shards`` weight voted for at or below.

    Votes are taken from the highest value down, starting from all ``n_shards`` of weight, until
    the weight left is no longer a quorum; that vote's value is the answer. Weight that did not
    vote counts as voting below every value (so give every member a vote: see
    :func:`decide_prices`). ValueError if there is no vote."""
    ordered = sorted(((v, w) for v, w in votes if w > 0), key=lambda vw: -vw[0])
    if not ordered:
        raise ValueError("quorum_below needs at least one vote with weight")
    left = n_shards
    for value, weight in ordered:
        left -= weight
        if not is_quorum(left, n_shards):
            return value
    return ordered[-1][0]  # the votes weigh less than n_shards: the lowest one


@dataclass(frozen=True)
class PriceVote:
    """One node's vote: FROST per 1 MiB unit per epoch stored, and per unit written."""

    storage_price: int
    write_price: int

    def __post_init__(self) -> None:
        for name in ("storage_price", "write_price"):
            v = getattr(self, name)
            if type(v) is not int or not 0 <= v < 1 << 64:
                raise ValueError(f"{name} must be an integer of FROST in 0..2^64-1")


def decide_prices(weights: Mapping[str, int], n_shards: int, votes: Mapping[str, PriceVote], current) -> tuple[int, int]:
    """(storage price, write price) for the next epoch: quorum-below over the members' shard
    weights; a member that sent no vote votes the current prices (``current``: ``Prices``)."""
    storage, write = [], []
    for peer, weight in weights.items():
        if weight <= 0:
            continue
        vote = votes.get(peer)
        storage.append((vote.storage_price if vote else current.storage_price_per_unit, weight))
        write.append((vote.write_price if vote else current.write_price_per_unit, weight))
    if not storage:
        return current.storage_price_per_unit, current.write_price_per_unit
    return quorum_below(storage, n_shards), quorum_below(write, n_shards)


def decide_parameters(weights: Mapping[str, int], n_shards: int, current: Mapping[str, int],
                      proposals: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """Parameters of the next epoch: a change takes effect when members whose shards weigh a
    quorum (``n - f``) propose the same value for it; otherwise the current value stays."""
    out = dict(current)
    tally: dict[tuple[str, int], int] = {}
    for peer, props in proposals.items():
        w = weights.get(peer, 0)
        if w <= 0:
            continue
        for name, value in props.items():
            tally[(name, value)] = tally.get((name, value), 0) + w
    for (name, value), w in sorted(tally.items()):
        if is_quorum(w, n_shards):
            out[name] = value
    return out


# ---------------------------------------------------------------- funds and rewards

FundKey = tuple[int, int]  # epochs [start, end) a storage fund pays for


def fund_take(start: int, end: int, amount: int, epoch: int) -> int:
    """What a fund of ``amount`` for epochs ``[start, end)`` owes epochs ``start..epoch``:
    ``amount // (end - start)`` each, the first epoch also the remainder; all of it once
    ``epoch >= end - 1``; nothing while ``epoch < start``."""
    if epoch < start or amount <= 0:
        return 0
    k = end - start
    if k <= 0 or epoch >= end - 1:
        return amount
    return (epoch - start + 1) * (amount // k) + amount % k


def epoch_takes(funds: Mapping[FundKey, int], epoch: int) -> dict[FundKey, int]:
    return {key: t for key, amount in funds.items() if (t := fund_take(key[0], key[1], amount, epoch))}


def epoch_fund(funds: Mapping[FundKey, int], epoch: int) -> int:
    """The FROST the storage funds owe epoch ``epoch`` (and any earlier epoch not yet paid out)."""
    return sum(epoch_takes(funds, epoch).values())


@dataclass(frozen=True)
class RewardSplit:
    fund: int  # what the epoch had to pay out
    credits: dict[str, int]  # account -> FROST (operators' commissions and stakers' parts)
    by_node: dict[str, int] = field(default_factory=dict)  # node -> its part (before commission)

    @property
    def paid(self) -> int:
        return sum(self.credits.values())

    @property
    def rollover(self) -> int:
        return self.fund - self.paid


def split_rewards(fund: int, n_shards: int, held: Mapping[str, int],
                  stakes: Mapping[str, Mapping[str, int]], commission_bps: Mapping[str, int] | int = 0,
                  operators: Mapping[str, str] | None = None, max_credits: int | None = None) -> RewardSplit:
    """Split ``fund`` FROST: node ``p`` earns ``fund * held[p] // n_shards`` (``held``: shards it
    held and kept through the epoch); its commission (``commission_bps``, per node or one for
    all) goes to its operator (``operators[p]``, by default the node's own key), the rest to
    ``stakes[p]`` (staker -> FROST staked with ``p``) pro rata, all rounded down. A node
    without stakers gives its whole part to its operator. Exact: ``paid + rollover == fund``."""
    if type(fund) is not int or fund < 0:
        raise ValueError("a fund is a non-negative integer of FROST")
    if sum(max(0, h) for h in held.values()) > n_shards:
        raise ValueError("nodes hold more shards than there are")
    credits: dict[str, int] = {}
    by_node: dict[str, int] = {}

    def credit(account: str, amount: int) -> None:
        if amount > 0:
            credits[account] = credits.get(account, 0) + amount

    for node in sorted(held):
        shards = held[node]
        if shards <= 0:
            continue
        part = fund * shards // n_shards
        if not part:
            continue
        by_node[node] = part
        bps = commission_bps if isinstance(commission_bps, int) else commission_bps.get(node, 0)
        bps = min(max(bps, 0), MAX_COMMISSION_BPS)
        commission = part * bps // BPS
        operator = (operators or {}).get(node, node)
        stakers = {s: a for s, a in (stakes.get(node) or {}).items() if a > 0}
        total = sum(stakers.values())
        if not total:
            credit(operator, part)
            continue
        credit(operator, commission)
        rest = part - commission
        for staker in sorted(stakers):
            credit(staker, rest * stakers[staker] // total)
    if max_credits is not None and len(credits) > max_credits:
        keep = sorted(credits, key=lambda a: (-credits[a], a))[:max_credits]
        credits = {a: credits[a] for a in sorted(keep)}
    return RewardSplit(fund, credits, by_node)


def settle_funds(funds: Mapping[FundKey, int], epoch: int, paid: int) -> dict[FundKey, int]:
    """The funds after epoch ``epoch`` paid out ``paid`` FROST: taken from what each fund owed
    up to ``epoch`` (in key order); a fund's later epochs move to ``[epoch + 1, end)``, and
    what was owed but not paid (rounding, shards not held) to the fund of epoch ``epoch + 1``
    alone. A node that had not applied every payment yet may be asked to pay more than its
    funds owe: the difference is taken from its later funds, then left negative (it arrives
    with the missing payments), so the total always drops by exactly ``paid``."""
    out: dict[FundKey, int] = {}
    next_only = (epoch + 1, epoch + 2)

    def add(key: FundKey, amount: int) -> None:
        if amount:
            out[key] = out.get(key, 0) + amount

    left = paid
    for key in sorted(funds):
        start, end = key
        amount = funds[key]
        if start > epoch:
            add(key, amount)
            continue
        take = fund_take(start, end, amount, epoch)
        d = min(left, take)
        left -= d
        add(next_only, take - d)  # owed, not paid: rolls over to the next epoch
        if amount - take:
            add((epoch + 1, end), amount - take)
    for key in sorted(out):
        if not left:
            break
        d = min(left, max(out[key], 0))
        out[key] -= d
        left -= d
    if left:
        out[next_only] = out.get(next_only, 0) - left
    return {k: v for k, v in out.items() if v}


# ---------------------------------------------------------------- wiring into the epoch state


def prices_for_next(prev, votes: Mapping[str, PriceVote]):
    """The ``Prices`` of epoch ``prev.epoch + 1`` from the members' votes (``prev``: EpochState)."""
    from .epoch_state import Prices

    storage, write = decide_prices(prev.weights, prev.n_shards, votes, prev.prices)
    return Prices(storage, write)


def stakes_by_node(stakes: Mapping[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    """The ledger's ``(staker, node) -> FROST`` as ``node -> {staker: FROST}``."""
    out: dict[str, dict[str, int]] = {}
    for (staker, node), amount in stakes.items():
        if amount > 0:
            out.setdefault(node, {})[staker] = amount
    return out


def rewards_for_epoch(prev, funds: Mapping[FundKey, int], stakes: Mapping[tuple[str, str], int],
                      held: Mapping[str, int] | None = None,
                      commissions: Mapping[str, int] | None = None) -> RewardSplit:
    """What epoch ``prev.epoch`` pays: its share of the storage funds, split over ``prev``'s
    committee by shards held (``held``: shards each node kept through the epoch; by default
    all it was assigned); each node's commission its own (``commissions``, basis points, as
    it voted) or else ``prev``'s ``commission_bps`` parameter."""
    shards = dict(prev.weights) if held is None else {p: min(held.get(p, 0), w) for p, w in prev.weights.items()}
    fund = epoch_fund(funds, prev.epoch)
    default = prev.parameter(COMMISSION_PARAMETER, 0) or 0
    bps = {p: (commissions or {}).get(p, default) for p in prev.weights}
    return split_rewards(fund, prev.n_shards, shards, stakes_by_node(stakes), bps, max_credits=MAX_REWARD_CREDITS)


def check_reward_credits(prev, nxt, funds: Mapping[FundKey, int]) -> str | None:
    """Why ``nxt``'s reward credits cannot be ``prev``'s epoch's, as a validator with these
    ``funds`` sees it (None: they can be): they may not pay more than the funds owe that
    epoch. A validator that has not applied every payment yet sees less and refuses an honest
    proposal until it has caught up (the agreement's next round judges again)."""
    credits = dict(nxt.reward_credits)
    if any(type(v) is not int or v < 0 for v in credits.values()):
        return "reward credits must be non-negative integers of FROST"
    owed = epoch_fund(funds, prev.epoch)
    if sum(credits.values()) > owed:
        return (f"the reward credits of epoch {prev.epoch} pay {sum(credits.values())} FROST; the storage funds "
                f"owe it {owed} here")
    return None


def economics_for_next(prev, *, price_votes: Mapping[str, PriceVote] | None = None,
                       funds: Mapping[FundKey, int] | None = None,
                       stakes: Mapping[tuple[str, str], int] | None = None,
                       held: Mapping[str, int] | None = None,
                       parameter_proposals: Mapping[str, Mapping[str, int]] | None = None,
                       commissions: Mapping[str, int] | None = None) -> dict:
    """Keyword arguments for ``next_state(prev, stakes, **economics_for_next(prev, ...))``:
    the voted prices, the parameters a quorum proposed and the reward credits of ``prev``'s
    epoch (empty when there is no fund to pay out)."""
    out: dict = {"prices": prices_for_next(prev, price_votes or {})}
    if parameter_proposals:
        out["parameters"] = decide_parameters(prev.weights, prev.n_shards, dict(prev.parameters),
                                              parameter_proposals)
    if funds is not None:
        split = rewards_for_epoch(prev, funds, stakes or {}, held, commissions)
        out["reward_credits"] = split.credits
    return out
