"""The WAL ledger through real nodes on 127.0.0.1 (in one trio process): transfers, no
double spend across a partition with a Byzantine signer, durable votes and state."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import trio

from netlab.inprocess import inprocess_network
from netlab.inprocess import test_network as make_network  # (not collected as a test)
from p2pwalrus.client.client import open_client
from p2pwalrus.client.wallet import SequenceUsedError, Wallet
from p2pwalrus.core.wal.genesis import make_genesis
from p2pwalrus.core.wal.ledger import check_conservation
from p2pwalrus.core.wal.messages import ConfirmRequest, SignRequest
from p2pwalrus.core.wal.orders import Order, OrderKind, Vote, make_certificate, sign_order
from p2pwalrus.p2p.identity import load_or_create_identity, peer_id_of
from p2pwalrus.node.ledger_service import BYZANTINE_FAULT

from .wal_helpers import address, assert_refused, expect_refusal, key
from p2pwalrus.core import protocols

WAL = 10**9
USERS = [key(200 + i) for i in range(3)]


def ledger_net(base: Path, n_nodes: int, n_shards: int = 10):
    """A network whose genesis makes the cluster's nodes (identities made now) the committee."""
    nodes = [str(peer_id_of(load_or_create_identity(base / f"node{i:03d}"))) for i in range(n_nodes)]
    net = make_network(n_shards)
    genesis = make_genesis(network=net.name, n_shards=n_shards, genesis_time=net.genesis_time,
                           epoch_length=net.epoch_length, committee=[(p, 100 * WAL) for p in nodes],
                           accounts=[(address(u), 50 * WAL) for u in USERS],
                           parameters={"max_epochs_ahead": net.max_epochs_ahead})
    return replace(net, genesis=genesis), nodes


def conserved_everywhere(cluster) -> None:
    for node in cluster.alive():
        check_conservation(node.ledger.ledger)


async def test_transfer_is_certified_confirmed_everywhere_and_conserves_wal(tmp_path):
    net, _ = ledger_net(tmp_path / "n", 4)
    with trio.fail_after(90):
        async with inprocess_network(4, 10, tmp_path / "n", net=net) as cluster:
            async with open_client(cluster.net, USERS[0]) as client:
                await client.refresh_membership()
                wallet = Wallet(client, USERS[0], tmp_path / "w0")
                cert = await wallet.transfer(address(USERS[1]), 3 * WAL)
                assert cert.order.sequence == 0
                await wallet.transfer(address(USERS[1]), WAL)
                view = await wallet.account()
                assert view.balance == 46 * WAL and view.next_sequence == 2
                assert (await wallet.account(address(USERS[1]))).balance == 54 * WAL
                node = cluster.alive()[1].peer_id
                await wallet.stake(node, 6 * WAL)
                assert (await wallet.account()).stakes == {node: 6 * WAL}
                await wallet.unstake(node, 2 * WAL)
                view = await wallet.account()
                assert view.stakes == {node: 4 * WAL} and view.balance == 42 * WAL
                rows = await wallet.history()
                assert [r["kind"] for r in rows] == ["transfer", "transfer", "stake", "unstake"]
            for n in cluster.alive():  # every node applied all four (the client waits for every reachable one)
                assert n.ledger.ledger.account(address(USERS[0])).next_sequence == 4
            conserved_everywhere(cluster)


async def _votes_from(client, signed, peers) -> dict[str, Vote]:
    votes = {}
    for peer in peers:
        reply = await client.call(peer, protocols.LEDGER_SIGN, {"signed": signed.to_json()})
        if reply.get("ok"):
            vote = Vote.from_json(reply["vote"])
            assert vote.authority == peer and vote.holds_for(signed.order)
            votes[peer] = vote
    return votes


async def test_two_orders_at_one_sequence_across_a_partition_get_at_most_one_certificate(tmp_path):
    net, ids = ledger_net(tmp_path / "n", 4)
    byzantine = ids[3]

    def configure(node):
        if node.peer_id == byzantine:
            node.faults.add(BYZANTINE_FAULT)  # votes for whatever it is shown

    with trio.fail_after(120):
        async with inprocess_network(4, 10, tmp_path / "n", net=net, configure=configure) as cluster:
            nodes = {n.peer_id: n for n in cluster.alive()}
            sides = [[ids[0], ids[1], byzantine], [ids[2], byzantine]]
            sender, g = USERS[0], net.genesis
            spends = [sign_order(sender, Order(g.hash(), 0, address(sender), 0, address(USERS[i]), 20 * WAL,
                                               OrderKind.TRANSFER)) for i in (1, 2)]
            async with open_client(cluster.net, sender) as client:
                await client.refresh_membership()  # the client learns every address, then the network splits
                for pid, node in nodes.items():  # the honest nodes of each side cannot reach the other side
                    other = [p for side in sides if pid not in side for p in side if p != byzantine]
                    node._apply_faults({"deny": other})
                wallet = Wallet(client, sender, tmp_path / "w")
                committee = wallet.committee
                certs = []
                for order_, side in zip(spends, sides):
                    votes = await _votes_from(client, order_, side)
                    if committee.is_quorum(committee.weight_of(votes)):
                        certs.append(make_certificate(order_, votes.values()))
                # The second spend shown to every node, and the first to the other side: still one.
                for order_ in spends:
                    votes = await _votes_from(client, order_, ids)
                    if committee.is_quorum(committee.weight_of(votes)):
                        certs.append(make_certificate(order_, votes.values()))
                assert len({c.order.digest for c in certs}) == 1  # side 1 weighs a quorum, side 2 does not
                assert committee.weight(byzantine) <= (10 - 1) // 3
                for node in nodes.values():
                    node._apply_faults({"deny": []})
                if certs:  # the partition healed: the one certificate reaches every node
                    assert await wallet._confirm(certs[0]) == 10
                # A wallet that knows nothing of it finds the sequence used (and may be locked).
                fresh = Wallet(client, sender, tmp_path / "fresh")
                try:
                    cert = await fresh.transfer(address(USERS[2]), WAL)
                    assert cert.order.sequence == 1  # sequence 0 was certified above
                except SequenceUsedError as exc:
                    assert "may be locked" in str(exc)
            conserved_everywhere(cluster)


async def test_a_vote_and_the_account_state_survive_a_node_restart(tmp_path):
    net, ids = ledger_net(tmp_path / "n", 4)
    with trio.fail_after(120):
        async with inprocess_network(4, 10, tmp_path / "n", net=net) as cluster:
            sender = USERS[0]
            g = net.genesis
            first, second = (sign_order(sender, Order(g.hash(), 0, address(sender), 0, address(USERS[i]), WAL,
                                                      OrderKind.TRANSFER)) for i in (1, 2))
            async with open_client(cluster.net, sender) as client:
                await client.refresh_membership()
                assert await _votes_from(client, first, [ids[0]])
                await cluster.kill(0)
                await cluster.start(0)
                await cluster.wait_converged(60)
                await client.refresh_membership()
                assert not await _votes_from(client, second, [ids[0]])  # remembered its vote for `first`
                assert await _votes_from(client, first, [ids[0]])  # and signs that one again
                wallet = Wallet(client, sender, tmp_path / "w")
                wallet.journal.save(first)  # as if this wallet had crashed after saving it
                await wallet.transfer(address(USERS[2]), 2 * WAL)  # finishes `first`, then sends at sequence 1
                await cluster.kill(1)
                await cluster.start(1)
                await cluster.wait_converged(60)
            restarted = cluster.slots[1].node
            acct = restarted.ledger.ledger.account(address(sender))
            assert acct.next_sequence == 2 and acct.balance == 47 * WAL
            conserved_everywhere(cluster)


async def test_a_node_that_was_down_pulls_the_certificates_it_missed(tmp_path):
    net, ids = ledger_net(tmp_path / "n", 4)
    with trio.fail_after(120):
        async with inprocess_network(4, 10, tmp_path / "n", net=net) as cluster:
            await cluster.kill(2)
            async with open_client(cluster.net, USERS[0]) as client:
                await client.refresh_membership()
                wallet = Wallet(client, USERS[0], tmp_path / "w")
                for _ in range(3):
                    await wallet.transfer(address(USERS[1]), WAL)
            await cluster.start(2)
            node = cluster.slots[2].node
            while (node.ledger.ledger.account(address(USERS[0])).next_sequence != 3):
                await node.ledger.changed.wait()
            assert node.ledger.ledger.account(address(USERS[1])).balance == 53 * WAL
            conserved_everywhere(cluster)


async def test_ledger_protocols_refuse_bad_requests_and_keep_serving(tmp_path):
    from p2pwalrus.errors import ProtocolError
    from p2pwalrus.p2p import rpc
    from p2pwalrus.p2p.framing import encode_uvarint

    net, ids = ledger_net(tmp_path / "n", 4)
    with trio.fail_after(90):
        async with inprocess_network(4, 10, tmp_path / "n", net=net) as cluster:
            async with open_client(cluster.net, USERS[0]) as client:
                await client.refresh_membership()
                peer = ids[0]
                signed = sign_order(USERS[0], Order(net.genesis.hash(), 0, address(USERS[0]), 0, address(USERS[1]),
                                                    WAL, OrderKind.TRANSFER))
                forged = signed.to_json()
                forged["order"]["amount"] = 10 * WAL  # the signature no longer holds
                bad = [(protocols.LEDGER_SIGN, {"signed": forged}, "signature"),
                       (protocols.LEDGER_SIGN, {"signed": {"order": 5}}, "order"),
                       (protocols.LEDGER_CONFIRM, {"certificate": {"signed": signed.to_json(), "votes": []}}, "votes"),
                       (protocols.LEDGER_ACCOUNT, {"address": "../../etc/passwd"}, "peer ID"),
                       (protocols.LEDGER_CERTS, {"sender": address(USERS[0]), "first": -1, "count": 5}, "sequence")]
                for proto, header, why in bad:
                    await expect_refusal(client, peer, proto, header, why)
                # A certificate of too little weight is refused, and nothing is applied.
                light = make_certificate(signed, [sign_vote_for(cluster, ids[0], signed)])
                await expect_refusal(client, peer, protocols.LEDGER_CONFIRM, ConfirmRequest(light), "needs 7")
                stream = await client.new_stream(peer, protocols.LEDGER_SIGN)  # announces a frame over the 256 KiB bound
                await stream.write(encode_uvarint(300 << 10) + b"{")
                try:
                    assert_refused(await rpc.recv_json(stream), "limit")
                except ProtocolError:
                    pass  # or reset: either way refused
                finally:
                    await rpc.close_quietly(stream)
                wallet = Wallet(client, USERS[0], tmp_path / "w")
                assert (await wallet.transfer(address(USERS[1]), WAL)).order.sequence == 0  # still serving
            conserved_everywhere(cluster)


def sign_vote_for(cluster, peer_id, signed):
    from p2pwalrus.core.wal.orders import sign_vote

    node = next(n for n in cluster.alive() if n.peer_id == peer_id)
    return sign_vote(node.keypair, peer_id, signed.order)


async def test_a_node_outside_the_committee_keeps_a_replica_and_does_not_vote(tmp_path):
    net, ids = ledger_net(tmp_path / "n", 4)
    with trio.fail_after(120):
        async with inprocess_network(4, 10, tmp_path / "n", net=net) as cluster:
            async with open_client(cluster.net, USERS[0]) as client:
                await client.refresh_membership()
                await Wallet(client, USERS[0], tmp_path / "w").transfer(address(USERS[1]), WAL)
                late = await cluster.start()  # not in genesis: no shards in the ledger's committee
                while late.ledger.ledger.account(address(USERS[0])).next_sequence != 1:
                    await late.ledger.changed.wait()  # pulled by anti-entropy when its map formed
                await client.refresh_membership()
                g = net.genesis
                signed = sign_order(USERS[0], Order(g.hash(), 0, address(USERS[0]), 1, address(USERS[1]), WAL,
                                                    OrderKind.TRANSFER))
                await expect_refusal(client, late.peer_id, protocols.LEDGER_SIGN, SignRequest(signed), code="not_a_member")
            conserved_everywhere(cluster)
