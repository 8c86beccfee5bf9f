"""Transport benchmark: stock py-libp2p 0.8.1 vs p2pwalrus.p2p.patches.fastpath (DESIGN 6).

One driver process and K peer processes on 127.0.0.1, each a TCP + Noise +
Yamux host built by ``p2pwalrus.p2p.host.build_host``:

* store: the driver sends TOTAL bytes split evenly across the K peers,
  concurrently, one stream per peer; each peer reads to EOF (hashing with
  sha256 unless ``--no-hash``) and replies with the digest, which is checked.
* read: the K peers each send their share to the driver concurrently, one
  stream per peer; the driver reads (and hashes) and checks each digest.

The clock runs from the first byte to the last digest checked; connecting and
opening streams are excluded. Every configuration is a fresh set of
subprocesses, patched (``fastpath.enable()`` in every process) or stock, and is
run ``--runs`` times; the median is printed. MB = 10^6 bytes of payload moved.

    .venv/bin/python bench/transport.py                 # 4 peers, 64 MiB, 3 runs
    .venv/bin/python bench/transport.py --peers 10 --total-mib 64 --no-hash
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

STORE = "/p2pwalrus/bench/store/1.0.0"
READ = "/p2pwalrus/bench/read/1.0.0"
LOOPBACK = "/ip4/127.0.0.1/tcp/0"
WRITE_CHUNK = 1 << 20  # application write size
READ_CHUNK = 1 << 20


# --- processes -----------------------------------------------------------------------


def _setup(patched: bool) -> None:
    if patched:
        from p2pwalrus.p2p.patches import fastpath

        if not fastpath.enable():
            raise SystemExit("fastpath refused to patch this libp2p version")


async def _read_to_eof(stream, update) -> int:
    from libp2p.network.stream.exceptions import StreamEOF

    total = 0
    while True:
        try:
            chunk = await stream.read(READ_CHUNK)
        except StreamEOF:
            return total
        if not chunk:
            return total
        total += len(chunk)
        update(chunk)


async def _write_all(stream, data: bytes) -> None:
    view = memoryview(data)
    for off in range(0, len(data), WRITE_CHUNK):
        await stream.write(bytes(view[off : off + WRITE_CHUNK]))


def _hasher(do_hash: bool):
    return hashlib.sha256() if do_hash else None


def _build_host():
    import multiaddr
    from libp2p.crypto.ed25519 import create_new_key_pair

    from p2pwalrus.p2p.host import build_host

    return build_host(create_new_key_pair(), [multiaddr.Multiaddr(LOOPBACK)])


def peer_main(args: argparse.Namespace) -> None:
    """A peer: receives a share (store) or sends its pre-generated share (read)."""
    _setup(args.patched)
    import multiaddr
    import trio
    from libp2p.custom_types import TProtocol

    share = os.urandom(args.share)
    share_digest = hashlib.sha256(share).digest()

    async def on_store(stream) -> None:
        h = _hasher(not args.no_hash)
        n = await _read_to_eof(stream, h.update if h else (lambda _c: None))
        await stream.write((h.digest() if h else b"\0" * 32) + struct.pack(">Q", n))
        await stream.close()

    async def on_read(stream) -> None:
        await stream.read(1)  # the request
        await stream.write(share_digest)
        await _write_all(stream, share)
        await stream.close()

    async def main() -> None:
        host = _build_host()
        host.set_stream_handler(TProtocol(STORE), on_store)
        host.set_stream_handler(TProtocol(READ), on_read)
        async with host.run(listen_addrs=[multiaddr.Multiaddr(LOOPBACK)]):
            print(f"ADDR {host.get_addrs()[0]}", flush=True)
            await trio.sleep_forever()

    trio.run(main)


def driver_main(args: argparse.Namespace) -> None:
    """The sender (store) or reader (read): connects to every peer, times one transfer."""
    _setup(args.patched)
    import multiaddr
    import trio
    from libp2p.custom_types import TProtocol
    from libp2p.peer.peerinfo import info_from_p2p_addr

    infos = [info_from_p2p_addr(multiaddr.Multiaddr(a)) for a in args.addrs]
    shares = [os.urandom(args.share) for _ in infos] if args.direction == "store" else []
    digests = [hashlib.sha256(s).digest() for s in shares]

    async def main() -> None:
        host = _build_host()
        async with host.run(listen_addrs=[multiaddr.Multiaddr(LOOPBACK)]):
            for info in infos:
                await host.connect(info)
            proto = TProtocol(STORE if args.direction == "store" else READ)
            streams = [await host.new_stream(info.peer_id, [proto]) for info in infos]
            errors: list[str] = []

            async def store(i: int) -> None:
                await _write_all(streams[i], shares[i])
                await streams[i].close()
                reply = bytearray()
                await _read_to_eof(streams[i], reply.extend)
                if len(reply) != 40 or struct.unpack(">Q", reply[32:])[0] != args.share:
                    errors.append(f"peer {i}: bad reply")
                elif not args.no_hash and bytes(reply[:32]) != digests[i]:
                    errors.append(f"peer {i}: digest mismatch")

            async def read(i: int) -> None:
                await streams[i].write(b"r")
                h = _hasher(not args.no_hash)
                head = bytearray()
                n = 0

                def update(chunk: bytes) -> None:
                    nonlocal n
                    if len(head) < 32:
                        take = 32 - len(head)
                        head.extend(chunk[:take])
                        chunk = chunk[take:]
                    n += len(chunk)
                    if h is not None:
                        h.update(chunk)

                await _read_to_eof(streams[i], update)
                await streams[i].close()
                if n != args.share:
                    errors.append(f"peer {i}: {n} of {args.share} bytes")
                elif h is not None and h.digest() != bytes(head):
                    errors.append(f"peer {i}: digest mismatch")

            t0 = time.perf_counter()
            with trio.fail_after(args.timeout):
                async with trio.open_nursery() as nursery:
                    for i in range(len(streams)):
                        nursery.start_soon(store if args.direction == "store" else read, i)
            elapsed = time.perf_counter() - t0
            if errors:
                raise SystemExit("; ".join(errors))
            total = args.share * len(streams)
            print(json.dumps({"seconds": elapsed, "bytes": total, "mbps": total / elapsed / 1e6}), flush=True)

    trio.run(main)


# --- orchestration -------------------------------------------------------------------


def _cmd(role: str, patched: bool, *extra: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), role, *(["--patched"] if patched else []), *extra]


def run_once(*, patched: bool, direction: str, peers: int, share: int, no_hash: bool, timeout: float) -> float:
    common = ["--share", str(share), *(["--no-hash"] if no_hash else [])]
    procs = [
        subprocess.Popen(_cmd("peer", patched, *common), stdout=subprocess.PIPE, text=True) for _ in range(peers)
    ]
    try:
        addrs = []
        for p in procs:
            line = p.stdout.readline().strip()
            if not line.startswith("ADDR "):
                raise RuntimeError(f"peer failed to start: {line!r}")
            addrs.append(line.split(" ", 1)[1])
        out = subprocess.run(
            _cmd("driver", patched, *common, "--direction", direction, "--timeout", str(timeout), *addrs),
            capture_output=True,
            text=True,
            timeout=timeout + 60,
        )
        if out.returncode != 0:
            raise RuntimeError(f"driver failed: {out.stderr[-2000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])["mbps"]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


def orchestrate(args: argparse.Namespace) -> None:
    total = args.total_mib * 1024 * 1024
    share = total // args.peers
    print(
        f"# {args.peers} peers + 1 driver on 127.0.0.1, {share * args.peers / 2**20:.0f} MiB per transfer, "
        f"{'no hashing' if args.no_hash else 'sha256 at the receiving end'}, median of {args.runs}; MB/s = 10^6 B/s",
        flush=True,
    )
    results: dict[tuple[str, str], float] = {}
    for direction in ("store", "read"):
        for mode in args.modes:
            samples = [
                run_once(
                    patched=(mode == "patched"),
                    direction=direction,
                    peers=args.peers,
                    share=share,
                    no_hash=args.no_hash,
                    timeout=args.timeout,
                )
                for _ in range(args.runs)
            ]
            results[(direction, mode)] = statistics.median(samples)
            print(
                f"{direction:5s} {mode:7s} median {results[(direction, mode)]:7.1f} MB/s   "
                f"runs: {', '.join(f'{s:.1f}' for s in samples)}",
                flush=True,
            )
    if "stock" in args.modes and "patched" in args.modes:
        for direction in ("store", "read"):
            s, p = results[(direction, "stock")], results[(direction, "patched")]
            print(f"{direction:5s} speed-up x{p / s:.2f}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="role")
    ap.add_argument("--peers", type=int, default=4, help="receiver/sender peer processes (default 4)")
    ap.add_argument("--total-mib", type=int, default=64, help="bytes moved per transfer, MiB (default 64)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-hash", action="store_true", help="receivers do not hash what they get")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--modes", nargs="+", default=["stock", "patched"], choices=["stock", "patched"])
    for role in ("peer", "driver"):
        p = sub.add_parser(role)
        p.add_argument("--patched", action="store_true")
        p.add_argument("--share", type=int, required=True)
        p.add_argument("--no-hash", action="store_true")
        if role == "driver":
            p.add_argument("--direction", choices=["store", "read"], required=True)
            p.add_argument("--timeout", type=float, default=300.0)
            p.add_argument("addrs", nargs="+")
    args = ap.parse_args(argv)
    if args.role == "peer":
        peer_main(args)
    elif args.role == "driver":
        driver_main(args)
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
