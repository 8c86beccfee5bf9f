"""Benchmark of certificate checks (issue 13); not a test.

Run:  flock /tmp/p2pwalrus-measure.lock .venv/bin/python bench/cert_check.py

For (nodes, shards) of (10, 31) and (100, 1000) it times `validate_certificate` against the
validator's own map for: an honest certificate (every holder's signature checked), a forged
one from identities holding at most f shards with a member set of 10,000 made-up IDs
(refused before any signature), and one naming every honest holder with bad signatures
(the worst case: the coverage holds, signatures are checked until a bad one, placed last).
Then the longest event-loop stall of a trio loop that checks 20 honest and 20 worst-case
certificates through the node's CertChecker (worker threads), against doing the same
checks on the loop.
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trio  # noqa: E402
from libp2p.crypto.ed25519 import create_new_key_pair  # noqa: E402

from p2pwalrus.config import NetworkConfig  # noqa: E402
from p2pwalrus.core.certificates import (  # noqa: E402
    AvailabilityCertificate,
    InvalidCertificateError,
    sign_confirmation,
    validate_certificate,
)
from p2pwalrus.core.keys import peer_id_from_public_key  # noqa: E402
from p2pwalrus.core.placement import compute_shard_map  # noqa: E402
from p2pwalrus.node.certcheck import CertChecker  # noqa: E402
from p2pwalrus.core.thresholds import max_faulty  # noqa: E402

NET = "bench"
BLOB = bytes(range(32))


def keys(count: int):
    out = {}
    for i in range(count):
        kp = create_new_key_pair(i.to_bytes(4, "big") * 8)
        out[peer_id_from_public_key(kp.public_key.to_bytes())] = kp
    return out


def certificates(n_nodes: int, n_shards: int):
    ks = keys(n_nodes)
    view = compute_shard_map(list(ks), n_shards)
    holders = [p for p in view.nodes if view.shards_of(p)]
    honest = AvailabilityCertificate(NET, BLOB, n_shards, 1, 5, view.nodes, tuple(
        sign_confirmation(ks[p], p, NET, BLOB, 1, 5, view.shards_of(p)) for p in holders))
    f = max_faulty(n_shards)
    attackers, held = [], 0
    for p in sorted(holders, key=lambda p: len(view.shards_of(p))):
        if held + len(view.shards_of(p)) <= f:
            attackers.append(p)
            held += len(view.shards_of(p))
    made_up = tuple(f"12D3KooWmadeUp{i:06d}" for i in range(10_000))
    forged = AvailabilityCertificate(NET, BLOB, n_shards, 1, 5, made_up, tuple(
        sign_confirmation(ks[p], p, NET, BLOB, 1, 5, range(attackers.index(p), n_shards, len(attackers)))
        for p in attackers))
    last_bad = dataclasses.replace(honest, confirmations=(
        *honest.confirmations[:-1], dataclasses.replace(honest.confirmations[-1], signature=bytes(64))))
    return view, {"honest": honest, "forged, 10,000 made-up members": forged, "bad signature last": last_bad}


def check(cert, view):
    validate_certificate(cert, network=NET, n_shards=view.n_shards, views=[view], current_epoch=2,
                         max_epochs_ahead=100)


def timed(cert, view, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        try:
            check(cert, view)
        except InvalidCertificateError:
            pass
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


async def loop_stall(view, certs, *, threads: bool) -> float:
    """The longest gap between 1 ms ticks of the loop while the certificates are checked."""
    net = NetworkConfig(name=NET, n_shards=view.n_shards, epoch_length=3600.0, genesis_time=time.time() - 7200)
    checker = CertChecker(net)
    checker.set_map(view)
    worst = 0.0
    done = trio.Event()

    async def ticker():
        nonlocal worst
        last = time.perf_counter()
        while not done.is_set():
            await trio.sleep(0.001)
            now = time.perf_counter()
            worst = max(worst, now - last)
            last = now

    async def work():
        for cert in certs:
            try:
                if threads:
                    await checker.check(cert)
                else:
                    check(cert, view)
                    await trio.sleep(0)
            except InvalidCertificateError:
                pass
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        nursery.start_soon(work)
    return worst


def main() -> None:
    for n_nodes, n_shards in ((10, 31), (100, 1000)):
        view, certs = certificates(n_nodes, n_shards)
        for name, cert in certs.items():
            print(f"N={n_nodes:4d} n={n_shards:5d}  {name:34s} {timed(cert, view) * 1000:8.2f} ms")
        batch = [dataclasses.replace(c, members=(*c.members, f"x{i}")) for i in range(10)  # not cached
                 for c in (certs["honest"], certs["bad signature last"])]
        for threads in (False, True):
            stall = trio.run(functools.partial(loop_stall, view, batch, threads=threads)) * 1000
            print(f"N={n_nodes:4d} n={n_shards:5d}  longest loop stall, 20 checks {'in threads' if threads else 'on the loop':11s} "
                  f"{stall:8.2f} ms")


if __name__ == "__main__":
    main()
