"""A hostile libp2p peer against a running testnet (not a test): garbage, oversized length
prefixes, stalls and floods on every protocol and topic; then every node must be alive,
within its memory cap, and serve a byte-exact read.

    .venv/bin/netlab up --nodes 5 --shards 10 --dir /tmp/hostile-lab
    flock /tmp/p2pwalrus-measure.lock .venv/bin/python bench/hostile.py --dir /tmp/hostile-lab
    .venv/bin/netlab down --dir /tmp/hostile-lab

What it does, in order, to every running node:
1. stores a blob through an honest client (to read back at the end);
2. garbage: on every protocol the nodes offer (ours, GossipSub, Kademlia, identify,
   ping), one stream per malformed input (random bytes, a 2^40 length prefix, a varint
   that never ends, deeply nested JSON, 1e400, NaN, wrong types, empty frames);
3. gossip: malformed messages on every topic the nodes subscribe to, from a fresh
   identity per topic, with the attacker's own rate limit off (a flood);
4. stalls: 100 streams per node (from 4 identities) announcing 64 MiB frames, each
   sending 1 KiB and then nothing, held while node memory is sampled;
5. a stream flood: 400 streams per node held open at once by one identity (over its
   per-peer cap of 256).
Node RSS is sampled from /proc every 0.2 s throughout. Exit status 0 if every node is
alive, grew by less than --cap-mb over its starting RSS, and served the blob byte-exact.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio  # noqa: E402
from p2pwalrus.core import protocols  # noqa: E402


def rss(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def garbage_frames() -> list[bytes]:
    from p2pwalrus.p2p.framing import encode_uvarint

    deep = b"[" * 60_000
    return [
        os.urandom(200),
        encode_uvarint(1 << 40),
        b"\xff" * 11,
        encode_uvarint(len(deep)) + deep,
        encode_uvarint(20) + b'{"blob_id": 1e400}  ',
        encode_uvarint(13) + b'{"pair": NaN}',
        encode_uvarint(2) + b"[]",
        encode_uvarint(64) + json.dumps({"blob_id": "", "pair": -1, "kind": [], "targets": {}}).encode()[:64].ljust(64),
        encode_uvarint(0),
        encode_uvarint(64 << 20) + os.urandom(4096),
    ]


def gossip_garbage(network: str) -> list[bytes]:
    cert = {"network": network, "blob_id": "00" * 32, "n_shards": 10, "epoch": 0, "end_epoch": 1,
            "members": [""], "confirmations": [], "deletable": False, "owner": ""}
    as_json = json.dumps(cert).encode()
    return [
        b"", os.urandom(300), b"[" * 100_000, b'{"a":' * 20_000, b"\x01" + bytes(64) + b"[" * 3000,
        as_json, as_json.replace(b'"n_shards": 10', b'"n_shards": 1e400'),
        as_json.replace(b'"epoch": 0', b'"epoch": 1e400'), b"[1e400]",
        bytes(32) + (2 ** 32 - 1).to_bytes(4, "little") + b"\x00" * 40, bytes(36) + b"\x01" * 30,
    ] * 10  # a flood: the same kinds, again and again (each message is new to GossipSub)


class Attack:
    def __init__(self, lab, nodes):
        self.lab = lab
        self.nodes = nodes  # NodeEntry of the running nodes
        self.sent = {"streams": 0, "gossip": 0, "stalled": 0, "flood_streams": 0, "flood_refused": 0, "bytes": 0}
        self.base = {n.index: rss(n.pid) or 0 for n in nodes}
        self.peak = dict(self.base)

    async def sample(self) -> None:
        while True:
            for n in self.nodes:
                r = rss(n.pid)
                if r is not None:
                    self.peak[n.index] = max(self.peak[n.index], r)
            await trio.sleep(0.2)

    def open_attacker(self, degree: int = 8):
        from libp2p.crypto.ed25519 import create_new_key_pair

        from p2pwalrus.p2p.host import HostTimings, open_host

        return open_host(create_new_key_pair(), ["/ip4/127.0.0.1/tcp/0"], [], timings=HostTimings(gossip_degree=degree))

    async def connect_all(self, attacker) -> None:
        for n in self.nodes:
            await attacker.connect(n.addr)

    async def send_raw(self, host, peer, protocol: str, data: bytes) -> None:
        from p2pwalrus.p2p.probe import send_and_drain

        if await send_and_drain(host, peer, protocol, data):
            self.sent["streams"] += 1
            self.sent["bytes"] += len(data)

    async def garbage(self, targets: list[str]) -> None:
        from libp2p.peer.id import ID

        async with self.open_attacker() as attacker:
            await self.connect_all(attacker)
            limiter = trio.CapacityLimiter(32)  # under the per-peer stream cap: garbage reaches the parsers

            async def one(*args):
                async with limiter:
                    await self.send_raw(*args)

            async with trio.open_nursery() as nursery:
                for n in self.nodes:
                    for protocol in targets:
                        for frame in garbage_frames():
                            nursery.start_soon(one, attacker.host, ID.from_base58(n.peer_id), protocol, frame)

    async def gossip(self, topics: list[str], network: str) -> None:
        from libp2p.peer.id import ID

        for topic in topics:
            async with self.open_attacker() as attacker:
                attacker.gossipsub.spam_protection_enabled = False
                await self.connect_all(attacker)
                for n in self.nodes:
                    with trio.move_on_after(10):
                        await attacker.pubsub.wait_for_subscription(ID.from_base58(n.peer_id), topic, timeout=10)
                for msg in gossip_garbage(network):
                    with trio.move_on_after(5):
                        await attacker.pubsub.publish(topic, msg)
                        self.sent["gossip"] += 1
                with trio.move_on_after(2):  # let the last ones leave before the host closes
                    await trio.sleep(2)

    async def stall(self, per_node: int, hold: float) -> None:
        from libp2p.peer.id import ID

        from p2pwalrus.p2p import rpc
        from p2pwalrus.p2p.framing import encode_uvarint
        from p2pwalrus.node.service import MAX_PROOF_MESSAGE

        streams = []
        async with self.open_attacker() as a1, self.open_attacker() as a2, \
                self.open_attacker() as a3, self.open_attacker() as a4:
            attackers = [a1, a2, a3, a4]
            for a in attackers:
                await self.connect_all(a)
            for n in self.nodes:
                for i in range(per_node):
                    host = attackers[i % len(attackers)].host
                    with trio.move_on_after(5):
                        try:
                            s = await host.new_stream(ID.from_base58(n.peer_id), [protocols.PUT_PROOF])
                            await s.write(encode_uvarint(MAX_PROOF_MESSAGE) + os.urandom(1024))
                            streams.append(s)
                            self.sent["stalled"] += 1
                            self.sent["bytes"] += 1024
                        except Exception:
                            pass
            await trio.sleep(hold)  # the stall itself: memory is sampled meanwhile
            for s in streams:
                await rpc.close_quietly(s, reset=True)

    async def stream_flood(self, count: int) -> None:
        """``count`` streams per node from one identity, all held open at once (each announcing
        64 MiB and sending 512 bytes): the node's per-peer cap refuses those over it."""
        from libp2p.peer.id import ID

        from p2pwalrus.p2p import rpc
        from p2pwalrus.p2p.framing import encode_uvarint

        held = []
        async with self.open_attacker() as attacker:
            await self.connect_all(attacker)

            async def one(peer):
                with trio.move_on_after(10):
                    try:
                        s = await attacker.host.new_stream(peer, [protocols.PUT_PROOF])
                        await s.write(encode_uvarint(64 << 20) + os.urandom(512))
                        held.append(s)
                    except Exception:
                        self.sent["flood_refused"] += 1

            async with trio.open_nursery() as nursery:
                for n in self.nodes:
                    for _ in range(count):
                        self.sent["flood_streams"] += 1
                        nursery.start_soon(one, ID.from_base58(n.peer_id))
            for s in held:
                await rpc.close_quietly(s, reset=True)


async def run(args) -> int:
    from netlab.lab import Lab
    from p2pwalrus.client.client import open_client

    lab = Lab.open(args.dir)
    nodes = [n for n in lab.nodes if lab.alive(n)]
    if not nodes:
        print(f"no running node in {args.dir}", file=sys.stderr)
        return 2
    net = lab.client_network()
    data = os.urandom(args.blob_kib * 1024)
    with trio.fail_after(120):
        async with open_client(net) as client:
            await client.refresh_membership()
            stored = await client.store(data, epochs=1)
    attack = Attack(lab, nodes)
    all_protocols = [protocols.STORE, protocols.GET_METADATA, protocols.GET_SLIVER, protocols.GET_RECOVERY, protocols.BLOB_STATUS, protocols.GET_CERT,
                 protocols.PUT_CERT, protocols.LIST_CERTS, protocols.CONFIRM, protocols.NODE_INFO, protocols.PUT_PROOF, protocols.GET_PROOF,
                 protocols.LIST_BLOBS, protocols.DELETE, protocols.HEARTBEAT, protocols.MEMBERS, "/meshsub/1.0.0",
                 "/meshsub/1.1.0", "/ipfs/kad/1.0.0", "/ipfs/id/1.0.0", "/ipfs/id/push/1.0.0", "/ipfs/ping/1.0.0"]
    topics = [protocols.certs_topic(net.name), protocols.proofs_topic(net.name), protocols.nodes_topic(net.name), protocols.down_topic(net.name)]
    t0 = time.monotonic()
    phases = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(attack.sample)
        for name, fn in (("garbage", lambda: attack.garbage(all_protocols)),
                         ("gossip", lambda: attack.gossip(topics, net.name)),
                         ("stall", lambda: attack.stall(args.stalled, args.hold)),
                         ("flood", lambda: attack.stream_flood(args.flood))):
            p0 = time.monotonic()
            with trio.move_on_after(300):
                await fn()
            phases[name] = time.monotonic() - p0
        nursery.cancel_scope.cancel()
    alive = [n for n in nodes if lab.alive(n)]
    read_ok = False
    with trio.move_on_after(120):
        try:
            async with open_client(lab.client_network()) as client:
                await client.refresh_membership()
                read_ok = await client.read(stored.blob_id) == data
        except Exception as exc:
            print(f"read after the attack failed: {exc!r}", file=sys.stderr)
    cap = args.cap_mb << 20
    print(f"hostile peer against {len(nodes)} nodes of {args.dir} ({time.monotonic() - t0:.0f} s: "
          + ", ".join(f"{k} {v:.0f} s" for k, v in phases.items()) + ")")
    print(f"messages sent: {attack.sent['streams']} garbage streams on {len(all_protocols)} protocols, "
          f"{attack.sent['gossip']} gossip messages on {len(topics)} topics, {attack.sent['stalled']} stalled streams "
          f"announcing 64 MiB, {attack.sent['flood_streams']} flood streams held at once "
          f"({attack.sent['flood_refused']} refused at open); {attack.sent['bytes'] / 1e6:.1f} MB")
    print(f"nodes alive: {len(alive)}/{len(nodes)}; byte-exact read after: {'yes' if read_ok else 'NO'}")
    print(f"{'node':>4} {'start RSS':>10} {'peak RSS':>10} {'growth':>8}")
    within = True
    for n in nodes:
        growth = attack.peak[n.index] - attack.base[n.index]
        within &= growth < cap
        print(f"{n.index:>4} {attack.base[n.index] / 2**20:>8.0f} MiB {attack.peak[n.index] / 2**20:>6.0f} MiB "
              f"{growth / 2**20:>6.0f} MiB")
    print(f"peak RSS {max(attack.peak.values()) / 2**20:.0f} MiB; every node within +{args.cap_mb} MB: "
          f"{'yes' if within else 'NO'}")
    return 0 if len(alive) == len(nodes) and read_ok and within else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True, help="a running netlab testnet")
    ap.add_argument("--stalled", type=int, default=100, help="stalled streams per node (default 100)")
    ap.add_argument("--hold", type=float, default=5.0, help="seconds the stalled streams are held (default 5)")
    ap.add_argument("--flood", type=int, default=400, help="streams per node in the flood (default 400)")
    ap.add_argument("--cap-mb", type=int, default=50, help="largest RSS growth allowed per node (default 50)")
    ap.add_argument("--blob-kib", type=int, default=256, help="size of the blob read back (default 256)")
    args = ap.parse_args()
    from netlab.cli import quiet_libp2p

    quiet_libp2p()
    return trio.run(run, args)


if __name__ == "__main__":
    sys.exit(main())
