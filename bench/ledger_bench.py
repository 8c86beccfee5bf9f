"""WAL ledger timings on a netlab testnet of node processes (issue 15).

    flock /tmp/p2pwalrus-measure.lock .venv/bin/python bench/ledger_bench.py [--nodes 4] [--shards 10] [--runs 20]

Reports medians: one transfer through a connected client (votes of a quorum, then the
certificate handed to every node, each durable on the node's disk), split into its two
rounds, and a whole `p2pwalrus wallet transfer` process (start-up, dial, account query).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netlab.cli import bring_up  # noqa: E402
from netlab.wal import pay_from_faucet  # noqa: E402
from p2pwalrus.client.client import open_client  # noqa: E402
from p2pwalrus.client.wallet import Wallet, address_of  # noqa: E402
from p2pwalrus.core.wal.orders import Order, OrderKind, sign_order  # noqa: E402
from p2pwalrus.p2p.identity import load_or_create_identity  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--shards", type=int, default=10)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    lab, took = bring_up(d / "net", args.nodes, args.shards)
    try:
        key = load_or_create_identity(d / "client")
        other = address_of(load_or_create_identity(d / "other"))
        pay_from_faucet(lab.dir, address_of(key), 1000 * 10**9)

        async def in_process():
            votes, confirms, totals = [], [], []
            async with open_client(lab.client_network(), key) as client:
                await client.refresh_membership()
                w = Wallet(client, key, d / "client" / "wallet")
                seq = (await w.account()).next_sequence
                for i in range(args.runs):
                    t0 = time.perf_counter()
                    signed = sign_order(key, Order(w.genesis_hash, 0, w.address, seq + i, other, 10**6,
                                                   OrderKind.TRANSFER))
                    w.journal.save(signed)
                    cert = await w._certify(signed)
                    t1 = time.perf_counter()
                    await w._confirm(cert)
                    w.journal.save(signed, cert, "done")
                    t2 = time.perf_counter()
                    votes.append(t1 - t0)
                    confirms.append(t2 - t1)
                    totals.append(t2 - t0)
            return votes, confirms, totals

        votes, confirms, totals = trio.run(in_process)
        env = {**os.environ, "P2PWALRUS_CLIENT_DIR": str(d / "client"), "P2PWALRUS_NETWORK": str(lab.network_path)}
        cli = []
        for _ in range(max(3, args.runs // 4)):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "p2pwalrus", "wallet", "transfer", other, "1000FROST"], env=env,
                           check=True, capture_output=True)
            cli.append(time.perf_counter() - t0)
        ms = lambda xs: f"{statistics.median(xs) * 1000:.0f} ms (min {min(xs) * 1000:.0f}, max {max(xs) * 1000:.0f})"
        print(f"{args.nodes} nodes, {args.shards} shards (formed in {took:.1f} s)")
        print(f"  votes of a quorum     {ms(votes)}")
        print(f"  confirm at every node {ms(confirms)}")
        print(f"  transfer, in process  {ms(totals)}")
        print(f"  CLI transfer process  {ms(cli)}")
    finally:
        lab.down()


if __name__ == "__main__":
    main()
