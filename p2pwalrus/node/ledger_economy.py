"""What the ledger gives the epoch changes and takes from them (node/ledger_service.py's
LedgerService): the stakes it confirmed, the prices in force and the checking of store
payments, the economics of the next state, and the reward credits of decided states.
"""

from __future__ import annotations

import logging
import time

import trio

from ..core.wal.orders import Certificate
from ..core.wal.payments import PaymentError, check_payment, needs_payment
from ..errors import ProtocolError
from .ledger_sync import CATCH_UP_TIMEOUT

logger = logging.getLogger("p2pwalrus.ledger")

PRICE_CHANGE_GRACE = 120.0  # after a price change, payments at the previous prices still count this long
PAYMENT_CONFIRM_TIMEOUT = 5.0  # applying a store's payment certificate here (it is valid whether or not)


class _LedgerEpochs:
    """LedgerService's part in epochs, prices and payments (uses its ``node``, ``ledger``,
    ``genesis``, ``committee_for``, ``confirm``, ``lock``, ``_persist``, ``counters``)."""


    # --- epochs: the stakes this ledger confirmed go into the next epoch's state ---

    def node_stakes(self) -> dict[str, int]:
        """FROST staked with each node, as this node's ledger has it now."""
        out: dict[str, int] = {}
        for (_, node), amount in self.ledger.stakes.items():
            if amount:
                out[node] = out.get(node, 0) + amount
        return out

    def propose_next(self, current):
        """This node's proposal for the next epoch: the stakes its ledger confirmed."""
        from ..core.wal.epoch_state import InvalidEpochStateError, next_state

        try:
            return next_state(current, self.node_stakes(), **self.economics(current))
        except InvalidEpochStateError as exc:  # no stake left anywhere, say: keep the committee
            logger.warning("ledger stakes make no valid epoch state (%s): proposing the same stakes", exc)
            return next_state(current, current.stakes)

    def check_proposal(self, state) -> None:
        """valid(v), this node's part: the proposed stakes are those its ledger confirmed. A
        mismatch (one of us missed a certificate) makes this node pull what it missed; the
        agreement's next round judges again (epoch_service.forget_validity)."""
        mine = {p: s for p, s in self.node_stakes().items() if s}
        if dict(state.stakes) != mine:
            self.sync_wanted.set()
            raise ProtocolError(f"the proposed stakes of epoch {state.epoch} are not those this ledger confirmed")
        runner = getattr(self.node, "epochs", None)
        current = getattr(getattr(runner, "service", None), "current", None)
        if current is not None and current.epoch + 1 == state.epoch:
            self.check_economics(current, state)  # reward credits no more than the funds owe

    def epoch_adopted(self, state) -> None:
        self._committees.pop(state.epoch, None)

    # --- prices and payments ---

    def prices_now(self) -> tuple[int, int]:
        """(storage, write) price in force: the decided epoch state's when epochs run on this
        node, else genesis's."""
        runner = getattr(self.node, "epochs", None)
        state = getattr(getattr(runner, "service", None), "current", None)
        if state is not None:
            cur = (state.prices.storage_price_per_unit, state.prices.write_price_per_unit)
        else:
            cur = (self.genesis.storage_price, self.genesis.write_price)
        if cur != self._prices[-1]:
            self._prices = [self._prices[-1], cur]
            self._prices_changed_at = time.monotonic()
        return cur

    def price_options(self) -> list[tuple[int, int]]:
        """The prices a payment may have been computed at: the current ones, and for a while
        after a change the previous ones (a payment made just before the change)."""
        cur = self.prices_now()
        if len(self._prices) > 1 and time.monotonic() - self._prices_changed_at < PRICE_CHANGE_GRACE:
            return list(self._prices)
        return [cur]

    async def check_store_payment(self, payment, **what) -> int:
        """The cost a store's (or extension's) payment covers; PaymentError (a ProtocolError:
        the peer is told why) unless it is a valid storage payment certificate for this blob,
        its encoded size and epochs, of at least the cost at the prices in force. Nothing is
        asked while every price is 0. The certificate is also applied here (into the fund)."""
        prices = self.price_options()
        if not needs_payment(prices):
            return 0
        self.counters["payments_checked"] += 1
        try:
            cert = Certificate.from_json(payment) if payment is not None else None
            need = check_payment(cert.order if cert else None, prices=prices, **what)
            committee = self.committee_for(cert.order.epoch)
            if committee is None:
                raise PaymentError(f"the payment is certified in epoch {cert.order.epoch}; no committee is known "
                                   "here for it")
            if cert.order.genesis != self.genesis_hash:
                raise PaymentError("the payment is for another network (genesis hash differs)")
            await trio.to_thread.run_sync(cert.check, committee)  # signatures off the event loop
        except ProtocolError as exc:
            self.counters["payments_refused"] += 1
            if isinstance(exc, PaymentError):
                raise
            raise PaymentError(f"the payment does not hold: {exc}") from None
        try:
            with trio.move_on_after(PAYMENT_CONFIRM_TIMEOUT):
                await self.confirm(cert)  # usually applied already: the payer confirms it everywhere
        except Exception as exc:  # a certificate is final whether this node has applied it yet or not
            logger.info("ledger: the payment certificate of a store was not applied here yet: %r", exc)
        return need

    def economics(self, current) -> dict:
        """``next_state`` keyword arguments for the state after ``current``: prices voted by the
        committee (quorum-below), parameters a quorum proposed, and the reward credits of
        ``current``'s epoch from this ledger's funds and stakes, shards held as this node's
        storage challenges saw them. A proposer passes them on:
        ``next_state(current, stakes, **ledger.economics(current))``."""
        votes = getattr(self.node, "votes", None)
        if votes is None:
            return {}
        if self._held_view is None:
            from .vote_service import ChallengeView

            self._held_view = ChallengeView(self.node)
        return votes.economics(current, self._held_view(current))

    def check_economics(self, current, proposal) -> None:
        """valid(v), the ledger's part for issue 16: ``proposal``'s reward credits pay no more
        than this ledger's funds owe ``current``'s epoch. ProtocolError if they do (and pull
        what this node may have missed: the next round judges again)."""
        from ..core.wal.pricing import check_reward_credits

        why = check_reward_credits(current, proposal, self.ledger.funds)
        if why is not None:
            self.sync_wanted.set()
            raise ProtocolError(why)

    async def apply_decided(self, states) -> int:
        """Pay the reward credits of decided epoch states (each ``EpochState(e + 1)`` credits
        epoch ``e``'s rewards) not applied here yet, in epoch order, each durable before the
        next; how many were applied. Every node applies the same decided numbers."""
        from ..core.wal.pricing import epoch_fund

        applied = 0
        for state in sorted(states, key=lambda s: s.epoch):
            if state.epoch - 1 <= self.ledger.rewarded_epoch:
                continue
            credits = sum(amount for _, amount in state.reward_credits)
            if credits > epoch_fund(self.ledger.funds, state.epoch - 1):
                # The committee credited more than this ledger's funds owe the epoch: this node
                # missed payments (a store it was not reached for). Pull them first, so that its
                # funds do not go negative; the decided credits are applied either way.
                self.counters["reward_pulls"] = self.counters.get("reward_pulls", 0) + 1
                with trio.move_on_after(CATCH_UP_TIMEOUT):
                    await self.sync_once()
            async with self.lock:
                if self.ledger.apply_rewards(state.epoch - 1, dict(state.reward_credits)):
                    await self._persist()
                    applied += 1
        if applied:
            self.node.write_status()
            done, self.changed = self.changed, trio.Event()
            done.set()
        return applied

    async def run_rewards(self) -> None:
        """With epochs running on this node (``attach_epochs``), apply each decided state's
        reward credits as it is decided or pulled."""
        runner = getattr(self.node, "epochs", None)
        if runner is None:
            return
        await runner.started.wait()
        svc = runner.service
        while True:
            changed = svc.changed
            try:
                await self.apply_decided([s for s, _ in svc.links])
            except Exception as exc:  # a bad credit list is refused here, and logged: never the node's end
                logger.warning("ledger: reward credits not applied: %r", exc)
            await changed.wait()
