"""Governance votes on a storage node: its own signed vote, and the committee's gathered.

A node's vote (prices, capacity, parameter proposals: ``core/wal/votes.py``) is signed with
its identity key and kept in ``DATA_DIR/vote.json``; `p2pwalrus node --vote-storage-price ...`
writes it at start and `p2pwalrus vote --data-dir DIR ...` while the node runs (the node
reads the file again when it changes). Each node serves its vote on
``/p2pwalrus/node-vote/1.0.0`` and gathers the committee's once per epoch, shortly before the
epoch ends (``VOTE_LEAD`` seconds, or a quarter of a short epoch), when the proposer needs them:
asking every member on a timer cost N x (N - 1) streams every few seconds on an idle network.
It keeps the newest valid vote of each member; the proposer of the next epoch state turns
them into prices, parameters and reward credits with :meth:`VoteService.economics`
(:func:`make_proposer` gives an ``attach_epochs(..., propose=...)`` that does it).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import trio

from ..core.wal import messages as msg
from ..core.wal.epoch_state import next_state
from ..core.wal.pricing import PriceVote, economics_for_next
from ..core.wal.votes import InvalidVoteError, NodeVote, SignedNodeVote, newest, sign_node_vote
from ..p2p import rpc
from ..durable import write_atomic
from ..core import protocols

logger = logging.getLogger("p2pwalrus.votes")

VOTE_FILE = "vote.json"
VOTE_LEAD = 10.0  # s before an epoch's end when the committee's votes are gathered (at most)
MAX_VOTE_BYTES = 4 << 10


def write_vote(data_dir: Path, keypair, peer_id: str, genesis_hash: bytes, *, storage_price: int, write_price: int,
               capacity: int = 0, proposals: dict[str, int] | None = None,
               commission_bps: int | None = None) -> SignedNodeVote:
    """Sign a vote with the node's key and write it (atomically) into its data dir."""
    vote = NodeVote(genesis_hash, peer_id, int(time.time()), storage_price, write_price, capacity,
                    tuple(sorted((proposals or {}).items())), commission_bps)
    signed = sign_node_vote(keypair, vote)
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    write_atomic(Path(data_dir) / VOTE_FILE, json.dumps(signed.to_json()).encode())
    return signed


def read_vote(data_dir: Path) -> SignedNodeVote | None:
    try:
        raw = (Path(data_dir) / VOTE_FILE).read_bytes()
    except FileNotFoundError:
        return None
    try:
        return SignedNodeVote.from_json(json.loads(raw))
    except (ValueError, InvalidVoteError) as exc:
        logger.warning("vote file %s unreadable (%s): voting nothing", Path(data_dir) / VOTE_FILE, exc)
        return None


class VoteService:
    def __init__(self, node):
        self.node = node
        self.genesis_hash = node.ledger.genesis_hash
        self.votes: dict[str, SignedNodeVote] = {}  # the newest valid vote of each node seen
        self._mtime = None
        self.own: SignedNodeVote | None = None
        self._load_own()

    def _load_own(self) -> None:
        path = self.node.data_dir / VOTE_FILE
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime == self._mtime:
            return
        self._mtime = mtime
        vote = read_vote(self.node.data_dir)
        if vote is not None and (vote.vote.node != self.node.peer_id or vote.vote.genesis != self.genesis_hash):
            logger.warning("vote file is for another node or network: voting nothing")
            vote = None
        self.own = vote
        if vote is not None:
            self.votes[self.node.peer_id] = vote
            logger.info("voting storage price %d, write price %d FROST per unit", vote.vote.storage_price,
                        vote.vote.write_price)

    def _accept(self, peer: str, signed: SignedNodeVote) -> None:
        if signed.vote.node != peer or signed.vote.genesis != self.genesis_hash:
            raise InvalidVoteError("a vote of another node or network")
        self.votes[peer] = newest(self.votes.get(peer), signed)

    def start(self, node, nursery) -> None:
        node.node.host.set_stream_handler(protocols.NODE_VOTE, rpc.serve(self.handle, 10.0, "node-vote", node.gate,
                                                               node.peer_limits))
        nursery.start_soon(self.run)

    async def handle(self, stream, peer: str) -> None:
        msg.VoteRequest.from_json(await rpc.recv_json(stream, 256))
        self._load_own()
        await rpc.send_json(stream, msg.VoteReply(self.own).to_json())

    def members(self) -> list[str]:
        runner = getattr(self.node, "epochs", None)
        state = getattr(getattr(runner, "service", None), "current", None)
        if state is not None:
            return sorted(state.weights)
        return list(self.node.ledger.committee.members)

    async def gather(self) -> int:
        """Ask every other committee member for its vote; how many answered with a valid one."""
        got = 0
        live = set(self.node.members.live.peer_ids()) if self.node.members is not None else set()
        peers = [p for p in self.members() if p != self.node.peer_id and p in live]

        async def ask(peer: str) -> None:
            nonlocal got
            try:
                stream, obj = await self.node.call(peer, protocols.NODE_VOTE, msg.VoteRequest().to_json())
                await rpc.close_quietly(stream)
                reply = msg.parse_reply(obj, msg.VoteReply)
                if isinstance(reply, msg.VoteReply) and reply.vote is not None:
                    self._accept(peer, reply.vote)
                    got += 1
            except Exception as exc:
                logger.debug("vote of %s: %r", peer, exc)

        async with trio.open_nursery() as nursery:
            for peer in peers:
                nursery.start_soon(ask, peer)
        return got

    async def run(self) -> None:
        net = self.node.net
        while True:
            ending = net.current_epoch() + 1  # the epoch whose start ends this one
            lead = min(VOTE_LEAD, max(1.0, net.epoch_length / 4))
            await trio.sleep_until(trio.current_time() + max(0.0, net.epoch_start(ending) - lead - time.time()))
            self._load_own()
            try:
                await self.gather()
            except Exception as exc:
                logger.info("gathering votes failed: %r", exc)
            # Once per epoch: wait for the change, then for the next epoch's end.
            await trio.sleep(max(0.0, net.epoch_start(ending) - time.time()) + 0.05)

    # --- what the proposer of the next epoch state uses ---

    def price_votes(self) -> dict[str, PriceVote]:
        return {p: v.vote.prices for p, v in self.votes.items()}

    def proposals(self) -> dict[str, dict[str, int]]:
        return {p: dict(v.vote.proposals) for p, v in self.votes.items() if v.vote.proposals}

    def economics(self, prev, held=None) -> dict:
        """``next_state`` keyword arguments: quorum-below prices over the gathered votes (a member
        without one keeps the current prices), parameters a quorum proposed, and the reward
        credits of ``prev``'s epoch from this node's ledger (funds and stakes)."""
        ledger = self.node.ledger.ledger
        commissions = {p: v.vote.commission_bps for p, v in self.votes.items() if v.vote.commission_bps is not None}
        return economics_for_next(prev, price_votes=self.price_votes(), funds=dict(ledger.funds),
                                  stakes=dict(ledger.stakes), held=held, parameter_proposals=self.proposals(),
                                  commissions=commissions)


class ChallengeView:
    """Which members kept their shards through an epoch, as this node saw it: a member
    challenged during the epoch that answered none of them (failed > 0, passed 0 among the
    answers that came in that epoch of the network's clock), or that is down here at the
    epoch's end (its process gone, its link dead: it serves none of its shards), held nothing
    and earns nothing for the epoch; every other member is counted with all its shards (a
    challenge it was never asked is no evidence). Counting by the clock's epoch, not between
    two calls, keeps the window right however late, early or seldom this node proposes. The
    answer is fixed at the first call for an epoch, so a later round gets the same one."""

    KEEP = 4  # epochs of answers kept

    def __init__(self, storage_node):
        self.node = storage_node
        self.held: dict[int, dict[str, int]] = {}  # epoch -> the answer given for it

    def _counts(self, epoch: int) -> dict[str, dict[str, int]]:
        by_epoch = getattr(getattr(self.node, "repair", None), "challenge_epochs", {})
        return by_epoch.get(epoch, {})

    def _down(self, weights, n_shards: int) -> set[str]:
        """Members down here; none when this node sees less than a quorum of the weight live
        (it is the one cut off, or just restarted: its view is no evidence against others)."""
        from ..core.wal.pricing import is_quorum

        live_set = getattr(self.node, "members", None)
        if live_set is None:
            return set()  # no liveness here (a bare test node): no evidence
        live = set(live_set.live.peer_ids()) | {self.node.peer_id}
        if not is_quorum(sum(w for p, w in weights.items() if p in live), n_shards):
            return set()
        return {p for p in weights if p not in live}

    def __call__(self, prev) -> dict[str, int]:
        if prev.epoch not in self.held:
            counts = self._counts(prev.epoch)
            down = self._down(prev.weights, prev.n_shards)
            held = {}
            for peer, weight in prev.weights.items():
                c = counts.get(peer, {})
                failed_all = c.get("failed", 0) > 0 and c.get("passed", 0) == 0
                held[peer] = 0 if failed_all or peer in down else weight
            self.held[prev.epoch] = held
            for old in sorted(self.held)[:-self.KEEP]:
                del self.held[old]
        return dict(self.held[prev.epoch])


def make_proposer(storage_node, stakes_of=None, held_of=None):
    """An ``attach_epochs(..., propose=...)`` that fills prices, parameters and reward credits
    from the node's votes and ledger (``stakes_of(prev)``: the stakes to place by, default
    ``prev``'s; ``held_of(prev)``: shards each node kept through the epoch, default this
    node's storage challenges: :class:`ChallengeView`)."""
    held_of = held_of or ChallengeView(storage_node)

    def propose(prev):
        votes = getattr(storage_node, "votes", None)
        econ = votes.economics(prev, held_of(prev)) if votes is not None else {}
        return next_state(prev, stakes_of(prev) if stakes_of else prev.stakes, **econ)

    return propose


def ledger_proposer(storage_node):
    """The same through the node's ledger (``LedgerService.economics``), placing by ``prev``'s
    stakes: for tests and for a runner whose proposer is not the ledger's."""
    def propose(prev):
        return next_state(prev, prev.stakes, **storage_node.ledger.economics(prev))

    return propose
