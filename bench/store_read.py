"""Store and read throughput, Tahoe-LAFS and p2pwalrus side by side, in one run (not a test).

    .venv/bin/python bench/store_read.py [--sizes 1,16,64] [--reps 3] [--skip-tahoe] [--skip-small]

Tahoe-LAFS: the anchor harness ../shared/anchors/tahoe/run.py (run its setup.sh once), as a
subprocess, in the configuration issue 14 compares against: foolscap, 4-of-10, 10 storage
nodes, fresh random data each rep, medians. It runs twice, on a fresh grid each time:
`--via cli` (the figure the bar is judged on: `tahoe put FILE` and `tahoe get CAP FILE`, each
a whole process against the grid's running client node, start-up included, as p2pwalrus is
measured) and `--via web` (PUT /uri and GET /uri/CAP to the client node's web API, no
process start-up; printed alongside for reference, it is what earlier runs compared with).
Its repair phase is shrunk (--repair-mib 1 --kill 0) and its idle-CPU window cut to 2 s:
both run outside the throughput phase and are not reported here.

p2pwalrus: a testnet brought up as `netlab up` does (netlab.cli.bring_up), 10 node
processes, with the smallest shard count whose largest blob, (n-2f)(n-f) x 65534 bytes,
holds the largest size asked (66 for 64 MiB; the default 31 holds about 15 MB). Every store
and every read is a whole CLI process (`p2pwalrus store FILE`, `p2pwalrus -v read ID -o
OUT`), wall clock including its start-up; fresh random data each rep; the read is compared
byte for byte. The store's time split is parsed from its "(encode X s, upload Y s)" line,
the read's from its -v log line (fetch, verify, decode). One untimed 1 KiB store and read
come first (a first process pays cold .pyc and page-cache costs).

The p2pwalrus figures are taken twice (--daemon both, the default), each on its own fresh
testnet: with no daemon (P2PWALRUS_DAEMON=off: every command loads the network stack,
dials and pulls the membership itself), and with `p2pwalrus daemon` started for the client
after `netlab up` (the CLI hands store and read to it, as `tahoe put` and `tahoe get` hand
theirs to Tahoe's client node; the daemon keeps no blob cache, so every read fetches from
the nodes). With the daemon, the read's split comes from the daemon's -v log.

Then (report only, --skip-small to leave out) a `netlab up --nodes 10 --shards 31` testnet:
a 1 MiB store and read through the CLI, whole process, median of 5.

MB/s = 10^6 bytes of blob per second; times are medians over --reps. Tahoe runs first and
alone, then p2pwalrus: the two never share the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from p2pwalrus.core.thresholds import max_faulty  # noqa: E402

TAHOE_RUN = REPO.parent / "shared" / "anchors" / "tahoe" / "run.py"
SYMBOL_MAX = 65534  # largest RS2 symbol, bytes
STORE_LINE = re.compile(r"stored (\d+) bytes .*\(encode ([\d.]+) s, (?:([\d.]+) s of it waited for, )?"
                        r"upload ([\d.]+) s"
                        r"(?:; nodes verify ([\d.]+) s, write ([\d.]+) s)?")
READ_LINE = re.compile(r"read (\d+) bytes: certificate\+metadata ([\d.]+) s, fetch ([\d.]+) s "
                       r"\(verify ([\d.]+) s, summed\), decode ([\d.]+) s")


def largest_blob(n: int) -> int:
    f = max_faulty(n)
    return (n - 2 * f) * (n - f) * SYMBOL_MAX


def shards_for(nbytes: int) -> int:
    n = 4
    while largest_blob(n) < nbytes:
        n += 1
    return n


def mbps(nbytes: int, seconds: float) -> float:
    return nbytes / 1e6 / seconds


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- Tahoe-LAFS ------------------------------------------------------------------------


def run_tahoe(sizes: list[int], reps: int, json_out: Path, timeout: float, extra: list[str],
              via: str = "cli") -> dict | None:
    cmd = [sys.executable, str(TAHOE_RUN), "--k", "4", "--protocol", "foolscap",
           "--sizes-mib", ",".join(map(str, sizes)), "--reps", str(reps), "--via", via,
           "--repair-mib", "1", "--kill", "0", "--idle-secs", "2", "--json-out", str(json_out), *extra]
    log(f"Tahoe-LAFS ({via}): " + " ".join(cmd))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("["):  # its progress lines; its own table is printed again below
            print(f"    tahoe-{via} " + line, file=sys.stderr)
    res = json.loads(json_out.read_text())
    if proc.returncode != 0:
        log(f"Tahoe-LAFS harness exited {proc.returncode}: {res.get('error')}; leftover pids {res.get('leftover_pids')}")
    if "throughput" not in res:
        if via != "cli":  # the web API's figures are for reference only: go on without them
            log(f"the Tahoe-LAFS {via} run gave no throughput figures ({res.get('error')}); left out")
            return None
        raise SystemExit(f"the Tahoe-LAFS run gave no throughput figures: {res.get('error')}")
    return res


# --- p2pwalrus, through the CLI ------------------------------------------------------------


class Cli:
    def __init__(self, network: Path, workdir: Path, daemon_log: Path | None = None):
        exe = Path(sys.executable).parent / "p2pwalrus"
        self.exe = str(exe) if exe.exists() else shutil.which("p2pwalrus")
        if not self.exe:
            raise SystemExit("p2pwalrus CLI not found (run this with the venv's python)")
        self.network = str(network)
        self.work = workdir
        self.env = dict(os.environ, P2PWALRUS_CLIENT_DIR=str(workdir / "client-key"))
        self.env.pop("P2PWALRUS_NETWORK", None)
        # With a daemon running, the read's split is in the daemon's log, not the command's.
        self.daemon_log = daemon_log
        self.env["P2PWALRUS_DAEMON"] = "on" if daemon_log else "off"

    def start_daemon(self) -> subprocess.Popen:
        """`p2pwalrus -v daemon` for this client, as a user starts it; returns once it answers."""
        from p2pwalrus.config import load_network
        from p2pwalrus.daemon_link import DaemonLink

        log_fh = open(self.daemon_log, "wb")
        proc = subprocess.Popen([self.exe, "-v", "--network", self.network, "daemon"], env=self.env,
                                stdin=subprocess.DEVNULL, stdout=log_fh, stderr=subprocess.STDOUT)
        net = load_network(self.network)
        deadline = time.monotonic() + 60
        while (link := DaemonLink.find(net, Path(self.env["P2PWALRUS_CLIENT_DIR"]))) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(f"the daemon did not start; see {self.daemon_log}")
            time.sleep(0.1)
        link.close()
        return proc

    def _run(self, *args: str) -> tuple[subprocess.CompletedProcess, float]:
        t0 = time.perf_counter()
        proc = subprocess.run([self.exe, *args], capture_output=True, env=self.env, timeout=900)
        took = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"p2pwalrus {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stderr.decode(errors='replace')[-3000:]}")
        return proc, took

    def store(self, nbytes: int) -> dict:
        """A store of fresh random bytes: {blob_id, data, seconds, encode, upload}."""
        data = os.urandom(nbytes)
        src = self.work / "blob.in"
        src.write_bytes(data)
        proc, took = self._run("--network", self.network, "store", str(src))
        err = proc.stderr.decode(errors="replace")
        if ("through the daemon" in err) != bool(self.daemon_log):
            raise SystemExit(f"the store {'did not go' if self.daemon_log else 'went'} through a daemon:\n{err[-2000:]}")
        m = STORE_LINE.search(err)
        if not m or int(m.group(1)) != nbytes:
            raise SystemExit(f"no 'stored {nbytes} bytes' line from the store:\n{err[-2000:]}")
        return {"blob_id": proc.stdout.decode().split()[-1], "data": data, "seconds": took,
                "encode": float(m.group(2)), "encode_wait": float(m.group(3) or m.group(2)),
                "upload": float(m.group(4)),
                "node_verify": float(m.group(5) or "nan"), "node_write": float(m.group(6) or "nan")}

    def read(self, blob_id: str, data: bytes) -> dict:
        """A read, checked byte for byte: {seconds, head, fetch, verify, decode}."""
        out = self.work / "blob.out"
        out.unlink(missing_ok=True)
        mark = self.daemon_log.stat().st_size if self.daemon_log else 0
        proc, took = self._run("-v", "--network", self.network, "read", blob_id, "-o", str(out))
        if out.read_bytes() != data:
            raise SystemExit(f"read of {blob_id} differs from what was stored")
        err = proc.stderr.decode(errors="replace")
        if self.daemon_log:
            with open(self.daemon_log, "rb") as fh:
                fh.seek(mark)
                err = fh.read().decode(errors="replace")
        m = READ_LINE.search(err)
        if not m or int(m.group(1)) != len(data):
            raise SystemExit(f"no 'read {len(data)} bytes' line from `p2pwalrus -v read`:\n{err[-2000:]}")
        return {"seconds": took, "head": float(m.group(2)), "fetch": float(m.group(3)),
                "verify": float(m.group(4)), "decode": float(m.group(5))}


def med(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def measure_p2pwalrus(directory: Path, nodes: int, shards: int, sizes_bytes: list[int], reps: int,
                      daemon: bool = False) -> tuple[list, float]:
    from netlab.cli import bring_up

    how = "with `p2pwalrus daemon` running" if daemon else "no daemon (each command on its own)"
    log(f"p2pwalrus: netlab testnet of {nodes} nodes, {shards} shards in {directory}; {how}")
    lab, took = bring_up(directory, nodes, shards, log=lambda m: log("  " + m))
    rows = []
    daemon_proc = None
    try:
        log(f"  formed in {took:.1f} s")
        cli = Cli(lab.network_path, directory, directory / "daemon.log" if daemon else None)
        if daemon:
            daemon_proc = cli.start_daemon()
        warm = cli.store(1024)
        cli.read(warm["blob_id"], warm["data"])
        for nbytes in sizes_bytes:
            stores, reads = [], []
            for rep in range(reps):
                s = cli.store(nbytes)
                r = cli.read(s["blob_id"], s["data"])
                stores.append(s)
                reads.append(r)
                log(f"  {nbytes / (1 << 20):g} MiB rep{rep}: store {s['seconds']:.2f} s "
                    f"(encode {s['encode']:.2f}, waited {s['encode_wait']:.2f}, upload {s['upload']:.2f}, nodes "
                    f"verify {s['node_verify']:.2f} write {s['node_write']:.2f}), read {r['seconds']:.2f} s "
                    f"(fetch {r['fetch']:.2f}, verify {r['verify']:.2f}, decode {r['decode']:.2f})")
            rows.append((nbytes, stores, reads))
    finally:
        if daemon_proc is not None:
            daemon_proc.terminate()
            daemon_proc.wait(timeout=30)
        lab.down()
        (directory / "blob.in").unlink(missing_ok=True)
        (directory / "blob.out").unlink(missing_ok=True)
    return rows, took


# --- report ------------------------------------------------------------------------------


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else "PASS" if ok else "FAIL"


def _tahoe_line(res: dict, how: str, extra: str) -> str:
    p = res["params"]
    return (f"Tahoe-LAFS {how}: {res['tahoe_version']}, {p['k']}-of-{p['total']}, happy {p['happy']}, "
            f"{p['N_storage_nodes']} storage nodes, {p['protocol']}, {p['via']}, {p['reps']} reps, "
            f"netns={p['netns']}{'; run.py options added: ' + extra if extra else ''}")


def report(sizes, tahoe, rows_by, nodes, shards, reps, skip_tahoe, extra="") -> None:
    """`tahoe`: {"cli": harness result, "web": harness result} (either may be missing);
    `rows_by`: {how the CLI ran (no daemon / with the daemon): rows}."""
    print()
    tahoe = tahoe or {}
    cli, web = tahoe.get("cli"), tahoe.get("web")
    if cli:
        print(_tahoe_line(cli, "CLI (whole `tahoe put`/`tahoe get` processes; the bar is judged on this)", extra))
    if web:
        print(_tahoe_line(web, "web API (running client node, no process start-up; for reference)", extra))
    print(f"p2pwalrus: netlab bring_up, {nodes} node processes, {shards} shards (the smallest count whose "
          f"largest blob, {largest_blob(shards)} bytes, holds {max(sizes)} MiB; 31 shards hold "
          f"{largest_blob(31)}), whole CLI processes, {reps} reps")
    print("medians; MB/s = 10^6 bytes of blob per second\n")

    def fig(res, mib, key):
        return res["throughput"][f"{mib}MiB"][key] if res else None

    def f1(x, w):
        return f"{x:>{w}.1f}" if x is not None else f"{'-':>{w}}"

    def f2(x, w):
        return f"{x:>{w}.2f}" if x is not None else f"{'-':>{w}}"

    for how, rows in rows_by.items():
        print(f"\n== p2pwalrus CLI, {how} ==")
        _report_rows(sizes, rows, cli, web, fig, f1, f2, skip_tahoe)
    for how, res in (("CLI", cli), ("web", web)):
        if res:
            print(f"\nTahoe-LAFS {how} per-rep seconds (upload / download):")
            for mib in sizes:
                t = res["throughput"][f"{mib}MiB"]
                print(f"{mib:>4} MiB: {t['upload_s']} / {t['download_s']}")


def _report_rows(sizes, rows, cli, web, fig, f1, f2, skip_tahoe) -> None:
    hdr = (f"{'MiB':>4} | {'T-cli up':>8} {'down':>6} | {'T-web up':>8} {'down':>6} | {'p2pw store':>10} {'read':>6} | "
           f"{'st/up cli':>9} {'rd/dn cli':>9} | {'st/up web':>9} {'rd/dn web':>9} | {'store>=up':>9} {'read>=1.5x':>10}")
    print(hdr)
    print("-" * len(hdr))
    for mib, (nbytes, stores, reads) in zip(sizes, rows):
        st, rd = mbps(nbytes, med(stores, "seconds")), mbps(nbytes, med(reads, "seconds"))
        cu, cd = fig(cli, mib, "upload_MBps_median"), fig(cli, mib, "download_MBps_median")
        wu, wd = fig(web, mib, "upload_MBps_median"), fig(web, mib, "download_MBps_median")
        bar_st = verdict(st >= cu if cu is not None and mib >= 16 else None)
        bar_rd = verdict(rd >= 1.5 * cd if cd is not None else None)
        print(f"{mib:>4} | {f1(cu, 8)} {f1(cd, 6)} | {f1(wu, 8)} {f1(wd, 6)} | {st:>10.1f} {rd:>6.1f} | "
              f"{f2(cu and st / cu, 9)} {f2(cd and rd / cd, 9)} | {f2(wu and st / wu, 9)} {f2(wd and rd / wd, 9)} | "
              f"{bar_st:>9} {bar_rd:>10}")
    print("the bar (issue 14): store >= Tahoe upload at 16 and 64 MiB; read >= 1.5x Tahoe download "
          "(checked at every size), both systems as whole CLI processes (the T-cli columns)"
          + (" -- not checked, --skip-tahoe" if skip_tahoe else ""))
    print("\np2pwalrus time split, medians in seconds. store: whole process = encode-wait (the part of "
          "encode, which runs in its own threads from the moment the file is read, that the store waited for once "
          "connected) + upload (first sliver sent to every shard confirmed or n-f and a grace: send, node verify, "
          "node write) + the rest (start-up, membership, dials, certificate, exit); n-verif / n-write: "
          "seconds each node spent verifying / writing (group commit), summed over the nodes that confirmed, as "
          "they report them (10 nodes share 2 cores). read: whole process = "
          "certificate+metadata + fetch (verify runs inside it, summed over slivers in worker threads) + decode "
          "+ the rest (start-up, connect, membership, writing the file)")
    print(f"{'MiB':>4} | {'store':>6} {'encode':>6} {'e-wait':>6} {'upload':>6} {'n-verif':>7} {'n-write':>7} {'rest':>6} | "
          f"{'read':>6} {'cert+md':>7} {'fetch':>6} {'verify':>6} {'decode':>6} {'rest':>6}")
    for mib, (nbytes, stores, reads) in zip(sizes, rows):
        s, e, u = med(stores, "seconds"), med(stores, "encode"), med(stores, "upload")
        ew = med(stores, "encode_wait")
        nv, nw = med(stores, "node_verify"), med(stores, "node_write")
        r, h, f, v, d = (med(reads, k) for k in ("seconds", "head", "fetch", "verify", "decode"))
        print(f"{mib:>4} | {s:>6.2f} {e:>6.2f} {ew:>6.2f} {u:>6.2f} {nv:>7.2f} {nw:>7.2f} {s - ew - u:>6.2f} | "
              f"{r:>6.2f} {h:>7.2f} {f:>6.2f} {v:>6.2f} {d:>6.2f} {r - h - f - d:>6.2f}")
    print("p2pwalrus per-rep seconds (store / read):")
    for mib, (nbytes, stores, reads) in zip(sizes, rows):
        print(f"{mib:>4} MiB: {[round(x['seconds'], 3) for x in stores]} / {[round(x['seconds'], 3) for x in reads]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,16,64", help="MiB, comma-separated (whole numbers: the Tahoe harness's)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--shards", type=int, default=None,
                    help="default: the smallest count whose largest blob holds the largest size")
    ap.add_argument("--skip-tahoe", action="store_true", help="p2pwalrus only")
    ap.add_argument("--skip-tahoe-web", action="store_true",
                    help="Tahoe through its CLI only (the bar); leave out the web API's reference figures")
    ap.add_argument("--tahoe-timeout", type=float, default=900)
    ap.add_argument("--tahoe-args", default="", metavar="ARGS",
                    help="more options for run.py, after ours (the last one wins), e.g. '--n 4 --k 3' for a smoke run")
    ap.add_argument("--skip-small", action="store_true",
                    help="leave out the 1 MiB CLI figures on `netlab up --nodes 10 --shards 31`")
    ap.add_argument("--small-reps", type=int, default=5)
    ap.add_argument("--daemon", choices=("off", "on", "both"), default="both",
                    help="measure the CLI on its own, with `p2pwalrus daemon` running, or both (default)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    sizes_bytes = [mib << 20 for mib in sizes]
    shards = args.shards or shards_for(max(sizes_bytes))
    if largest_blob(shards) < max(sizes_bytes):
        raise SystemExit(f"{shards} shards hold at most {largest_blob(shards)} bytes")
    print(f"shards: {shards} (smallest n with (n-2f)(n-f)*{SYMBOL_MAX} >= {max(sizes_bytes)} bytes, "
          f"f=(n-1)//3)" if args.shards is None else f"shards: {shards} (--shards)", flush=True)

    with tempfile.TemporaryDirectory(prefix="store-read-") as tmp:
        tmp = Path(tmp)
        tahoe = None
        if not args.skip_tahoe:
            if not TAHOE_RUN.exists():
                raise SystemExit(f"{TAHOE_RUN} not found (or pass --skip-tahoe)")
            tahoe = {via: run_tahoe(sizes, args.reps, tmp / f"tahoe-{via}.json", args.tahoe_timeout,
                                    args.tahoe_args.split(), via)
                     for via in (("cli",) if args.skip_tahoe_web else ("cli", "web"))}
            tahoe = {via: res for via, res in tahoe.items() if res is not None}
        rows_by = {}
        for daemon in {"off": (False,), "on": (True,), "both": (False, True)}[args.daemon]:
            how = "with `p2pwalrus daemon` running" if daemon else "no daemon"
            rows_by[how], _ = measure_p2pwalrus(tmp / f"lab-{int(daemon)}", args.nodes, shards, sizes_bytes,
                                                args.reps, daemon=daemon)
        small = None
        if not args.skip_small:
            small_rows, took = measure_p2pwalrus(tmp / "small", 10, 31, [1 << 20], args.small_reps)
            small = small_rows[0]
    report(sizes, tahoe, rows_by, args.nodes, shards, args.reps, args.skip_tahoe, args.tahoe_args)
    if small:
        nbytes, stores, reads = small
        s, r = med(stores, "seconds"), med(reads, "seconds")
        print(f"\n1 MiB on `netlab up --nodes 10 --shards 31` (report only), whole CLI process, median of "
              f"{args.small_reps}: store {s:.2f} s ({verdict(s < 1.5)} < 1.5 s; encode "
              f"{med(stores, 'encode'):.2f}, upload {med(stores, 'upload'):.2f}), read {r:.2f} s "
              f"({verdict(r < 1.5)} < 1.5 s; fetch {med(reads, 'fetch'):.2f}, decode {med(reads, 'decode'):.2f})")
        print(f"  per rep: store {[round(x['seconds'], 3) for x in stores]}, read {[round(x['seconds'], 3) for x in reads]}")


if __name__ == "__main__":
    main()
