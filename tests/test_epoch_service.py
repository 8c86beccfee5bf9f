"""Epoch changes through the real stack: 4 nodes on 127.0.0.1 run one agreement over libp2p streams.

Each node is a real libp2p host (TCP, Noise, Yamux) with an EpochService; the
partition is the node's own deny-list (what netlab's `partition` fault sets):
streams to and from the other side are refused both ways.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

import trio
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from p2pwalrus.core.wal.agreement import Timeouts, VoteKind
from p2pwalrus.core.wal.epoch_state import genesis_state, next_state, verify_chain
from p2pwalrus.node.epoch_service import EpochService
from p2pwalrus.p2p.host import open_host
from p2pwalrus.core import protocols

LOOPBACK = ["/ip4/127.0.0.1/tcp/0"]
WAL = 10**9
FAST = Timeouts(propose=0.6, prevote=0.3, precommit=0.3, delta=0.2)


async def _hosts(stack: AsyncExitStack, count: int = 4):
    keys = [create_new_key_pair() for _ in range(count)]
    peers = [str(ID.from_pubkey(k.public_key)) for k in keys]
    genesis = genesis_state("testnet", 16, {p: 100 * WAL for p in peers})
    hosts = [await stack.enter_async_context(open_host(k, LOOPBACK, [])) for k in keys]
    for i, a in enumerate(hosts):
        for b in hosts[i + 1:]:
            assert await a.connect(b.listen_addrs()[0])
    return genesis, keys, peers, hosts


async def _services(nursery, genesis, keys, hosts):
    services = [EpochService(h, k, genesis, timeouts=FAST, gossip_every=0.3) for h, k in zip(hosts, keys)]
    for svc in services:
        await nursery.start(svc.run)
    return services


async def _change_all(services, proposals, results):
    async with trio.open_nursery() as nursery:
        for svc, prop in zip(services, proposals):
            async def one(svc=svc, prop=prop):
                results[svc.peer_id] = await svc.change_epoch(prop)
            nursery.start_soon(one)


async def test_four_nodes_on_loopback_decide_one_epoch_state_and_a_newcomer_verifies_it():
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
          genesis, keys, peers, hosts = await _hosts(stack)
          async with trio.open_nursery() as nursery:
            services = await _services(nursery, genesis, keys, hosts)
            # Two views of the stakes (one node has not seen a stake change): both valid proposals.
            views = [{p: 100 * WAL for p in peers} | {peers[0]: 300 * WAL}] * 3 + [{p: 100 * WAL for p in peers}]
            proposals = [next_state(genesis, v) for v in views]
            results = {}
            await _change_all(services, proposals, results)
            states = {r.state for r in results.values()}
            assert len(states) == 1
            (state,) = states
            assert state.epoch == 1 and state in proposals
            for svc in services:
                assert svc.current == state
                assert verify_chain(genesis.digest, genesis, svc.chain_links()) == state
            nursery.cancel_scope.cancel()


async def test_a_two_two_partition_stalls_the_epoch_change_and_it_completes_after_the_heal():
    with trio.fail_after(90):
        async with AsyncExitStack() as stack:
          genesis, keys, peers, hosts = await _hosts(stack)
          async with trio.open_nursery() as nursery:
            services = await _services(nursery, genesis, keys, hosts)
            sides = (set(peers[:2]), set(peers[2:]))
            for host, peer in zip(hosts, peers):
                host.deny |= sides[1] if peer in sides[0] else sides[0]
            for host, peer in zip(hosts, peers):
                for other in host.deny:
                    await host.host.disconnect(ID.from_base58(other))
            proposal = next_state(genesis, {p: 100 * WAL for p in peers} | {peers[3]: 50 * WAL})
            results = {}
            async with trio.open_nursery() as changes:
                changes.start_soon(_change_all, services, [proposal] * 4, results)
                # Each side hears all it can (its own two prevotes: 8 of 16 shards, no quorum), and
                # keeps hearing the gossip of its side for 6 more inputs; nobody decides.
                for svc in services:
                    side = sides[0] if svc.peer_id in sides[0] else sides[1]
                    while svc.machine is None or {v.sender for v in svc.machine.votes(VoteKind.PREVOTE, 0)} != side:
                        await svc.progress.wait()
                for svc in services:
                    for _ in range(6):
                        await svc.progress.wait()
                    assert svc.machine.decision is None and svc.machine.step >= 1
                assert results == {}
                assert all(svc.current == genesis for svc in services)
                for host in hosts:  # heal: senders dial the other side again by themselves
                    host.deny.clear()
            assert {r.state for r in results.values()} == {proposal}
            assert all(verify_chain(genesis.digest, genesis, s.chain_links()) == proposal for s in services)
            nursery.cancel_scope.cancel()


async def test_junk_forgeries_and_oversized_frames_from_a_stranger_are_refused_and_the_change_still_decides():
    from libp2p.peer.peerinfo import info_from_p2p_addr
    import multiaddr

    from p2pwalrus.core.keys import sign
    from p2pwalrus.core.wal.agreement import MAX_MESSAGE_SIZE, sign_vote
    from p2pwalrus.p2p.framing import encode_frames, encode_uvarint

    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            genesis, keys, peers, hosts = await _hosts(stack)
            stranger_key = create_new_key_pair()
            stranger = str(ID.from_pubkey(stranger_key.public_key))
            attacker = await stack.enter_async_context(open_host(stranger_key, LOOPBACK, []))
            async with trio.open_nursery() as nursery:
                services = await _services(nursery, genesis, keys, hosts)
                forged = sign_vote(lambda d: sign(stranger_key, d), stranger, VoteKind.PRECOMMIT, genesis.digest, 1,
                                   0, bytes(32)).to_bytes()
                wrong_chain = sign_vote(lambda d: sign(keys[0], d), peers[0], VoteKind.PREVOTE, bytes(32), 1, 0,
                                        None).to_bytes()
                attacks = [
                    (1).to_bytes(2, "big") + encode_frames([b"\x02" + bytes(200)]),  # junk
                    (1).to_bytes(2, "big") + encode_frames([forged]),  # a stranger's vote
                    (1).to_bytes(2, "big") + encode_frames([wrong_chain]),  # another network's
                    (0).to_bytes(2, "big"),  # an empty batch
                    (65535).to_bytes(2, "big"),  # too many
                    (1).to_bytes(2, "big") + encode_uvarint(MAX_MESSAGE_SIZE + 1),  # too large, announced
                ]
                for host in hosts:
                    assert await attacker.connect(info_from_p2p_addr(multiaddr.Multiaddr(host.listen_addrs()[0])))
                    for attack in attacks:
                        stream = await attacker.open_stream(host.peer_id, [protocols.EPOCH])
                        await stream.write(attack)
                        await stream.close()
                proposal = next_state(genesis, {p: 100 * WAL for p in peers})
                results = {}
                await _change_all(services, [proposal] * 4, results)
                assert {r.state for r in results.values()} == {proposal}
                assert sum(s.counters["rejected"] for s in services) >= 4 * 2  # forged and foreign, parsed and refused
                nursery.cancel_scope.cancel()
