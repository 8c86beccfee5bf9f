"""What a many-node network in one process spends its start on (not a test).

    .venv/bin/python bench/inproc_counts.py [--nodes 50] [--shards 100] [--timeout 60]

Runs `netlab inproc`'s measurement (netlab/inproc.py: nodes started in batches of 10 in one
trio process, then waited for one network) with counters around py-libp2p 0.8.1: connections
added and removed (each counted at both ends), streams opened per protocol, gossip messages
received per topic (duplicates included) and sleeps per call site (the wake-ups of periodic
upkeep). Prints the progress lines, the result and the counters, with rates per second.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

COUNTS: collections.Counter = collections.Counter()


def instrument() -> None:
    import trio

    import libp2p.host.basic_host as basic_host
    import libp2p.network.swarm as swarm
    import libp2p.pubsub.pubsub as pubsub

    add_conn, remove_conn = swarm.Swarm.add_conn, swarm.Swarm.remove_conn
    new_stream, push_msg, sleep = basic_host.BasicHost.new_stream, pubsub.Pubsub.push_msg, trio.sleep

    async def counted_add_conn(self, *args, **kwargs):
        COUNTS["connection added"] += 1
        return await add_conn(self, *args, **kwargs)

    def counted_remove_conn(self, conn):
        COUNTS["connection removed"] += 1
        return remove_conn(self, conn)

    async def counted_new_stream(self, peer_id, protocol_ids, *args, **kwargs):
        COUNTS[f"stream {protocol_ids[0]}"] += 1
        return await new_stream(self, peer_id, protocol_ids, *args, **kwargs)

    async def counted_push_msg(self, forwarder, msg):
        COUNTS[f"gossip received {','.join(msg.topicIDs)}"] += 1
        return await push_msg(self, forwarder, msg)

    async def counted_sleep(seconds):
        caller = sys._getframe(1).f_code
        where = caller.co_filename.split("site-packages/")[-1].split("/p2pwalrus/")[-1]
        COUNTS[f"sleep {where}:{caller.co_name}"] += 1
        return await sleep(seconds)

    swarm.Swarm.add_conn, swarm.Swarm.remove_conn = counted_add_conn, counted_remove_conn
    basic_host.BasicHost.new_stream, pubsub.Pubsub.push_msg = counted_new_stream, counted_push_msg
    trio.sleep = counted_sleep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--shards", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for one network after the start")
    args = ap.parse_args()
    instrument()
    from netlab.inproc import measure

    t0 = time.monotonic()
    res = measure(args.nodes, args.shards, timeout=args.timeout, log=lambda m: print(m, flush=True))
    took = time.monotonic() - t0
    print(res)
    for what, n in COUNTS.most_common(30):
        print(f"{n:8d} {n / took:8.1f}/s  {what}")


if __name__ == "__main__":
    main()
