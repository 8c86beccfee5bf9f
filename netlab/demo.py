"""`netlab demo`: the quick start. A small testnet, a generated file stored and read back."""

from __future__ import annotations

import random
import shutil
import signal
import tempfile
import time
from pathlib import Path

import trio


def run_demo(nodes: int, shards: int, size: str, wait: bool, directory: str | None, con) -> int:
    from p2pwalrus.client.client import open_client
    from p2pwalrus.core.blob_id import blob_id_to_str

    from .cli import bring_up, print_hints
    from .scenario import parse_size

    own_dir = directory is None
    d = Path(directory or tempfile.mkdtemp(prefix="netlab-demo-"))
    lab = None
    try:
        con.print(f"[bold]netlab demo[/bold]: starting {nodes} storage nodes ({shards} shards) in {d}")
        lab, took = bring_up(d, nodes, shards, log=lambda m: con.print(f"  [dim]{m}[/dim]"))
        con.print(f"[green]network formed[/green] in {took:.1f} s: every node sees all {nodes}, one shard map")
        data = random.Random(0).randbytes(parse_size(size))
        src = d / "demo-file.bin"
        src.write_bytes(data)

        async def store_and_read():
            net = lab.client_network()
            async with open_client(net) as client:
                await client.refresh_membership()
                t = time.monotonic()
                res = await client.store(data, epochs=2)
                t_store = time.monotonic() - t
            async with open_client(net) as client:  # a fresh client, as another user would be
                await client.refresh_membership()
                t = time.monotonic()
                back = await client.read(res.blob_id)
                t_read = time.monotonic() - t
                status = await client.blob_status(res.blob_id)
            return res, t_store, back, t_read, status

        res, t_store, back, t_read, status = trio.run(store_and_read)
        bid = blob_id_to_str(res.blob_id)
        con.print(f"stored {src.name} ({len(data)} bytes) in {t_store:.2f} s: blob ID [bold]{bid}[/bold], "
                  f"{res.shards_confirmed}/{shards} shards confirmed, certified until epoch {res.certificate.end_epoch}")
        if back != data:
            con.print("[red]read back: bytes differ![/red]")
            return 1
        con.print(f"read it back in {t_read:.2f} s: [green]{len(back)} bytes, identical[/green]; "
                  f"blob-status: {status['status']}, {status['shards_stored']}/{shards} shards stored")
        url = lab.start_gateway()
        con.print(f"HTTP gateway (Walrus publisher/aggregator API) at [bold]{url}[/bold], dashboard at {url}/")
        print_hints(con, lab)
        con.print(f"  p2pwalrus --network {lab.network_path} read {bid} -o copy.bin")
        con.print(f"  curl {url}/v1/blobs/{bid} -o copy.bin")
        con.print(f"  curl -X PUT '{url}/v1/blobs?epochs=2' --upload-file FILE")
        if not wait:
            return 0
        con.print("[bold]The testnet keeps running: press Ctrl-C to tear it down.[/bold]")
        try:
            signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            con.print("\ntearing down")
        return 0
    finally:
        if lab is not None:
            lab.down()
        if own_dir:
            shutil.rmtree(d, ignore_errors=True)
        con.print("testnet stopped" + ("" if not own_dir else f", {d} removed"))
