"""Transport fast path (p2pwalrus.p2p.patches.fastpath): byte-exact transfers, interop with stock peers.

Patching is process-global, so the unpatched side of every interop test runs in
a subprocess: this file run as a script (``serve`` or ``client``, with or
without ``--patched``). In this process the patch is applied per test by the
``patched`` fixture and undone afterwards, so other test modules see stock
libp2p. Loopback only; every test is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import hashlib
import os
import random
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import trio

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import multiaddr
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.peer.peerinfo import info_from_p2p_addr

from p2pwalrus.p2p.patches import fastpath
from p2pwalrus.p2p.host import build_host

SINK = TProtocol("/p2pwalrus/fastpath-test/sink/1.0.0")  # peer reads to EOF, replies sha256 + length
SOURCE = TProtocol("/p2pwalrus/fastpath-test/source/1.0.0")  # peer sends `size` seeded bytes
LOOPBACK = "/ip4/127.0.0.1/tcp/0"
WRITE_CHUNK = 3 * 1024 * 1024 + 7  # odd size: writes straddle Yamux frames and Noise messages
SCRIPT = Path(__file__).resolve()


def payload(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


async def read_to_eof(stream, sink=None) -> int:
    total = 0
    while True:
        try:
            chunk = await stream.read(1 << 20)
        except StreamEOF:
            return total
        if not chunk:
            return total
        total += len(chunk)
        if sink is not None:
            sink(chunk)


async def write_chunked(stream, data: bytes) -> None:
    view = memoryview(data)
    for off in range(0, len(data), WRITE_CHUNK):
        await stream.write(bytes(view[off : off + WRITE_CHUNK]))


async def sink_handler(stream) -> None:
    h = hashlib.sha256()
    n = await read_to_eof(stream, h.update)
    await stream.write(h.digest() + struct.pack(">Q", n))
    await stream.close()


async def source_handler(stream) -> None:
    req = b""
    while len(req) < 16:
        req += await stream.read(16 - len(req))
    size, seed = struct.unpack(">QQ", req)
    await write_chunked(stream, payload(seed, size))
    await stream.close()


def make_host():
    host = build_host(create_new_key_pair(), [multiaddr.Multiaddr(LOOPBACK)])
    host.set_stream_handler(SINK, sink_handler)
    host.set_stream_handler(SOURCE, source_handler)
    return host


def full_addr(host) -> str:
    return str(host.get_addrs()[0])


async def send_and_check(host, peer_id, size: int, seed: int) -> None:
    """We write ``size`` bytes; the peer's digest must match ours."""
    data = payload(seed, size)
    stream = await host.new_stream(peer_id, [SINK])
    await write_chunked(stream, data)
    await stream.close()
    reply = bytearray()
    await read_to_eof(stream, reply.extend)
    assert len(reply) == 40, f"bad reply length {len(reply)}"
    assert struct.unpack(">Q", reply[32:])[0] == size, "peer received a different byte count"
    assert bytes(reply[:32]) == hashlib.sha256(data).digest(), f"digest mismatch sending {size} bytes"


async def fetch_and_check(host, peer_id, size: int, seed: int) -> None:
    """The peer writes ``size`` seeded bytes; ours must be exactly them."""
    stream = await host.new_stream(peer_id, [SOURCE])
    await stream.write(struct.pack(">QQ", size, seed))
    got = bytearray()
    await read_to_eof(stream, got.extend)
    await stream.close()
    assert len(got) == size, f"received {len(got)} of {size} bytes"
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload(seed, size)).digest(), f"bytes differ ({size})"


async def exchange(host, addr: str, sizes: list[int]) -> None:
    info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
    await host.connect(info)
    for i, size in enumerate(sizes):
        await send_and_check(host, info.peer_id, size, seed=1000 + i)
        await fetch_and_check(host, info.peer_id, size, seed=2000 + i)


# --- subprocess roles ----------------------------------------------------------------


async def _serve_main() -> None:
    host = make_host()
    async with host.run(listen_addrs=[multiaddr.Multiaddr(LOOPBACK)]):
        print(f"ADDR {full_addr(host)}", flush=True)
        await trio.sleep_forever()  # until the test terminates us


async def _client_main(addr: str, sizes: list[int]) -> None:
    host = make_host()
    async with host.run(listen_addrs=[multiaddr.Multiaddr(LOOPBACK)]):
        with trio.fail_after(60):
            await exchange(host, addr, sizes)
    print("OK", flush=True)


def _script_main(argv: list[str]) -> None:
    patched = "--patched" in argv
    args = [a for a in argv if a != "--patched"]
    if patched:
        assert fastpath.enable()
    if args[0] == "serve":
        trio.run(_serve_main)
    elif args[0] == "client":
        trio.run(_client_main, args[1], [int(s) for s in args[2:]])
    else:
        raise SystemExit(f"unknown role {args[0]!r}")


def _peer_cmd(*args: str, patched: bool) -> list[str]:
    return [sys.executable, str(SCRIPT), *args, *(["--patched"] if patched else [])]


async def _start_server(nursery, *, patched: bool):
    """Start a serving peer subprocess; return (process, its full address)."""
    proc = await nursery.start(
        lambda task_status: trio.run_process(
            _peer_cmd("serve", patched=patched),
            stdout=subprocess.PIPE,
            check=False,
            task_status=task_status,
        )
    )
    line = b""
    while not line.endswith(b"\n"):
        chunk = await proc.stdout.receive_some(4096)
        assert chunk, "peer subprocess exited before printing its address"
        line += chunk
    text = line.decode().strip()
    assert text.startswith("ADDR "), text
    return proc, text.split(" ", 1)[1]


# --- tests ----------------------------------------------------------------------------

INTEROP_SIZES = [8 * 1024 * 1024, 1024 * 1024 + 1, 0]
EXACT_SIZES = [0, 1, 65535, 65536, 1024 * 1024 + 1, 5 * 1024 * 1024]


@pytest.fixture
def patched():
    assert fastpath.enable()
    try:
        yield
    finally:
        fastpath.disable()


async def test_patched_host_to_stock_subprocess(patched):
    """Patched dialer writes to and reads from an unpatched listener; digests match."""
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            proc, addr = await _start_server(nursery, patched=False)
            try:
                host = make_host()
                async with host.run(listen_addrs=[multiaddr.Multiaddr(LOOPBACK)]):
                    await exchange(host, addr, INTEROP_SIZES)
            finally:
                proc.terminate()


async def test_stock_subprocess_to_patched_host(patched):
    """Unpatched dialer writes to and reads from a patched listener; digests match."""
    with trio.fail_after(90):
        host = make_host()
        async with host.run(listen_addrs=[multiaddr.Multiaddr(LOOPBACK)]):
            cmd = _peer_cmd("client", full_addr(host), *map(str, INTEROP_SIZES), patched=False)
            result = await trio.run_process(cmd, capture_stdout=True, capture_stderr=True, check=False)
            assert result.returncode == 0 and result.stdout.strip() == b"OK", result.stderr.decode()[-3000:]


@pytest.mark.parametrize("size", EXACT_SIZES)
async def test_patched_to_patched_is_byte_exact(patched, size):
    with trio.fail_after(60):
        a, b = make_host(), make_host()
        listen = [multiaddr.Multiaddr(LOOPBACK)]
        async with a.run(listen_addrs=listen), b.run(listen_addrs=listen):
            await exchange(a, full_addr(b), [size])


async def test_patched_subprocess_to_patched_host(patched):
    """Both sides patched, across processes (the kernel splits reads differently than in-process)."""
    with trio.fail_after(90):
        host = make_host()
        async with host.run(listen_addrs=[multiaddr.Multiaddr(LOOPBACK)]):
            cmd = _peer_cmd("client", full_addr(host), *map(str, EXACT_SIZES), patched=True)
            result = await trio.run_process(cmd, capture_stdout=True, capture_stderr=True, check=False)
            assert result.returncode == 0 and result.stdout.strip() == b"OK", result.stderr.decode()[-3000:]


def test_enable_is_idempotent_and_disable_restores():
    from libp2p.security.secure_session import SecureSession
    from libp2p.stream_muxer.yamux import yamux

    stock_read, stock_size = SecureSession.read, yamux.MAX_MESSAGE_SIZE
    assert fastpath.enable() and fastpath.enable()
    try:
        patched_read = SecureSession.read
        assert fastpath.enable()
        assert SecureSession.read is patched_read  # not wrapped twice
        assert yamux.MAX_MESSAGE_SIZE == fastpath.YAMUX_MAX_PAYLOAD + yamux.HEADER_SIZE
        assert yamux.DEFAULT_WINDOW_SIZE == 256 * 1024  # the initial window is never raised
    finally:
        fastpath.disable()
    assert SecureSession.read is stock_read and yamux.MAX_MESSAGE_SIZE == stock_size


def test_yamux_settings_are_read_from_the_environment_once(monkeypatch):
    from libp2p.stream_muxer.yamux import yamux

    stock = yamux._yamux_data_read_timeout
    monkeypatch.setenv("PY_YAMUX_DATA_READ_TIMEOUT", "7")
    assert fastpath.enable()
    try:
        assert yamux._yamux_data_read_timeout() == 7.0 and yamux._py_yamux_env("DATA_READ_TIMEOUT") == "7"
        monkeypatch.setenv("PY_YAMUX_DATA_READ_TIMEOUT", "9")
        # the value first read stays
        assert yamux._yamux_data_read_timeout() == 7.0 and yamux._py_yamux_env("DATA_READ_TIMEOUT") == "7"
    finally:
        fastpath.disable()
    assert yamux._yamux_data_read_timeout is stock and stock() == 9.0


def test_gossipsub_skips_the_score_decay_only_when_nothing_decays():
    from libp2p.pubsub.score import ScoreParams, TopicScoreParams

    from p2pwalrus.p2p.host import build_gossipsub, counters_never_decay

    assert counters_never_decay(ScoreParams())
    assert not counters_never_decay(ScoreParams(p3_mesh_message_deliveries=TopicScoreParams(decay=0.9)))
    assert not counters_never_decay(ScoreParams(p5_behavior_penalty_decay=0.5))
    router = build_gossipsub()
    router.scorer.behavior_penalty["peer"] = 2.0
    router.scorer.on_heartbeat()
    assert router.scorer.behavior_penalty["peer"] == 2.0


async def test_remembered_host_addresses_are_the_stock_ones_until_the_listeners_change(patched):
    """Patch 14: the host's addresses come from the last computation while the transport
    addresses stand, and after another listen what stock says."""
    host = make_host()
    async with host.run(listen_addrs=[multiaddr.Multiaddr(LOOPBACK)]):
        first = host.get_addrs()
        assert first == stock_addrs(host) and str(first[0]).endswith(f"/p2p/{host.get_id()}")
        assert host.get_addrs() == first and host.get_addrs() is not first  # a copy each time
        await host.get_network().listen(multiaddr.Multiaddr(LOOPBACK))  # (what stock says of it, we say)
        assert host.get_addrs() == stock_addrs(host)


def stock_addrs(host):
    from p2pwalrus.p2p.patches import tcp

    return tcp._originals["BasicHost.get_addrs"](host)


def test_other_library_version_is_refused(monkeypatch):
    import libp2p
    from libp2p.stream_muxer.yamux import yamux

    monkeypatch.setattr(libp2p, "__version__", "0.8.2")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert fastpath.enable() is False
    assert not fastpath.is_enabled()
    assert any(issubclass(w.category, RuntimeWarning) for w in caught)
    assert yamux.MAX_MESSAGE_SIZE == 64 * 1024


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    _script_main(sys.argv[1:])


MESSAGES = TProtocol("/p2pwalrus/fastpath-test/messages/1.0.0")


async def test_concurrent_writes_on_one_stream_never_interleave(patched):
    """GossipSub writes one peer's stream from several tasks. A write that the send window
    splits must not let another task's write in between (go-yamux holds a send lock):
    interleaved, the peer read garbage, and py-libp2p let the decode error stop its node."""
    size, writers, per_writer = 100_000, 6, 12
    got: list[bytes] = []
    bad_lengths: list[int] = []  # a length field read from the middle of another message
    start_reading = trio.Event()
    done = trio.Event()

    async def reader(stream):
        await start_reading.wait()
        buf = b""
        while len(got) < writers * per_writer:
            while len(buf) < 4 or len(buf) < 4 + size:
                buf += await stream.read(65536)
            n = struct.unpack(">I", buf[:4])[0]
            if n != size:
                bad_lengths.append(n)
                break
            got.append(buf[4:4 + n])
            buf = buf[4 + n:]
        done.set()

    with trio.fail_after(30):
        a, b = make_host(), make_host()
        a.set_stream_handler(MESSAGES, reader)
        listen = [multiaddr.Multiaddr(LOOPBACK)]
        async with a.run(listen_addrs=listen), b.run(listen_addrs=listen):
            await b.connect(info_from_p2p_addr(multiaddr.Multiaddr(full_addr(a))))
            stream = await b.new_stream(a.get_id(), [MESSAGES])

            async def writer(tag: int):
                for i in range(per_writer):
                    await stream.write(struct.pack(">I", size) + bytes([tag * 16 + i]) * size)

            async with trio.open_nursery() as nursery:
                for tag in range(1, writers + 1):
                    nursery.start_soon(writer, tag)
                while stream.muxed_stream.send_window > 0:  # the writers wait on a full window
                    await trio.sleep(0.01)
                start_reading.set()
                # A reader that stopped at garbled framing leaves the writers waiting for
                # window: end them, so that the checks below say what went wrong.
                await done.wait()
                nursery.cancel_scope.cancel()
    # (An empty placeholder for a garbled message used to pass the check on message bytes:
    # b"" == b""[:1] * size. Garbled framing is now a failure of its own.)
    assert not bad_lengths, f"read a length of {bad_lengths[0]} instead of {size}: writes interleaved"
    assert len(got) == writers * per_writer
    assert all(len(m) == size and m == m[:1] * size for m in got), "a message holds bytes of another: writes interleaved"
    assert sorted(m[0] for m in got) == sorted(t * 16 + i for t in range(1, writers + 1) for i in range(per_writer))


async def test_stream_notifications_skip_library_noops_and_still_reach_other_notifees(patched):
    """Patch 11: opening and closing a stream starts no notifier nursery for the library's
    no-op notifees, and a notifee that does something still hears of both."""
    from libp2p.abc import INotifee
    from libp2p.network.swarm import Swarm

    class Recorder(INotifee):
        def __init__(self):
            self.events: list[str] = []
            self.closed = trio.Event()

        async def opened_stream(self, network, stream):
            self.events.append("opened")

        async def closed_stream(self, network, stream):
            self.events.append("closed")
            self.closed.set()

        async def connected(self, network, conn): ...
        async def disconnected(self, network, conn): ...
        async def listen(self, network, multiaddr): ...
        async def listen_close(self, network, multiaddr): ...

    fanned_out: list[str] = []
    orig_notify = Swarm._notify

    async def counting_notify(self, method, *args):
        fanned_out.append(method)
        return await orig_notify(self, method, *args)

    Swarm._notify = counting_notify
    try:
        with trio.fail_after(30):
            a, b = make_host(), make_host()
            a.set_stream_handler(MESSAGES, lambda stream: stream.close())
            listen = [multiaddr.Multiaddr(LOOPBACK)]
            async with a.run(listen_addrs=listen), b.run(listen_addrs=listen):
                await b.connect(info_from_p2p_addr(multiaddr.Multiaddr(full_addr(a))))
                stream = await b.new_stream(a.get_id(), [MESSAGES])
                assert not [m for m in fanned_out if m.endswith("_stream")]  # only no-op notifees so far

                recorder = Recorder()
                b.get_network().register_notifee(recorder)
                stream = await b.new_stream(a.get_id(), [MESSAGES])
                await stream.reset()
                await recorder.closed.wait()
                assert {"opened", "closed"} <= set(recorder.events)
    finally:
        Swarm._notify = orig_notify
    assert not [m for m in fanned_out if m.endswith("_stream")]


async def test_service_tasks_find_their_parent_by_lookup(patched):
    """Patch 12: a task started from inside a service task is that task's child, and one started
    from outside the service (another service's task, or none) is a root task, as in stock."""
    from libp2p.tools.anyio_service import Service, background_trio_service
    from libp2p.tools.anyio_service.trio_manager import TrioManager

    from libp2p.tools.anyio_service.trio_tasks import FunctionTask

    found: dict[str, object] = {}
    walked: list[int] = []
    orig_iterate = FunctionTask.__dict__["iterate_tasks"]

    def counting_iterate(cls, *tasks):
        walked.append(len(tasks))
        return orig_iterate.__func__(cls, *tasks)

    class Svc(Service):
        async def run(self):
            await trio.sleep_forever()

    svc = Svc()
    FunctionTask.iterate_tasks = classmethod(counting_iterate)
    try:
        await _parent_lookup_checks(svc, found, walked)
    finally:
        FunctionTask.iterate_tasks = orig_iterate


async def _parent_lookup_checks(svc, found, walked):
    from libp2p.tools.anyio_service import background_trio_service
    from libp2p.tools.anyio_service.trio_manager import TrioManager

    with trio.fail_after(10):
        async with background_trio_service(svc) as manager:
            assert isinstance(manager, TrioManager)
            child_started = trio.Event()

            async def child():
                child_started.set()
                await trio.sleep_forever()

            async def parent():
                found["parent"] = manager._find_parent_task(trio.lowlevel.current_task())
                manager.run_task(child)
                await trio.sleep_forever()

            manager.run_task(parent)
            await child_started.wait()
            parent_task = found["parent"]
            assert parent_task is not None and parent_task.trio_task is not None
            assert len(parent_task.children) == 1  # the child hangs under the task that started it
            assert manager._find_parent_task(trio.lowlevel.current_task()) is None  # not a task of this service
            assert not walked  # found by lookup, not by walking the service's task tree
            manager.cancel()


async def test_queued_pubsub_rpcs_go_out_as_one_write(patched):
    """(13) RPCs waiting for one peer are merged into one RPC: every message and control entry
    arrives, in order, in fewer writes, each a well-formed RPC; and no write grows much past
    MERGED_RPC_BYTES."""
    from libp2p.pubsub.pb import rpc_pb2
    from libp2p.pubsub.pubsub import Pubsub
    from libp2p.pubsub.rpc_queue import RpcQueue

    from p2pwalrus.p2p.patches import pubsub as pubsub_patches

    class Recorder:
        def __init__(self):
            self.writes: list[bytes] = []

        async def write_msg(self, stream, rpc) -> bool:
            self.writes.append(rpc.SerializeToString())
            return True

        def _handle_dead_peer(self, peer_id):
            raise AssertionError("the sending loop failed")

    def publish(i: int, size: int = 100) -> rpc_pb2.RPC:
        return rpc_pb2.RPC(publish=[rpc_pb2.Message(data=i.to_bytes(4, "big") * (size // 4), topicIDs=["t"])])

    queue = RpcQueue()
    for i in range(5):
        assert queue.push(publish(i))
    assert queue.push(rpc_pb2.RPC(control=rpc_pb2.ControlMessage(ihave=[rpc_pb2.ControlIHave(topicID="t", messageIDs=[b"x"])])))
    queue.close()  # the loop sends what is queued, then ends
    rec = Recorder()
    with trio.fail_after(10):
        await Pubsub.handle_sending_messages(rec, "peer", None, queue)
    assert len(rec.writes) == 1
    sent = rpc_pb2.RPC.FromString(rec.writes[0])
    assert [int.from_bytes(m.data[:4], "big") for m in sent.publish] == list(range(5))
    assert [h.messageIDs for h in sent.control.ihave] == [[b"x"]]

    big = pubsub_patches.MERGED_RPC_BYTES // 3
    queue = RpcQueue()
    for i in range(7):
        assert queue.push(publish(i, big))
    queue.close()
    rec = Recorder()
    with trio.fail_after(10):
        await Pubsub.handle_sending_messages(rec, "peer", None, queue)
    sent = [rpc_pb2.RPC.FromString(w) for w in rec.writes]
    assert [int.from_bytes(m.data[:4], "big") for r in sent for m in r.publish] == list(range(7))
    assert 1 < len(sent) < 7
    assert all(len(w) < pubsub_patches.MERGED_RPC_BYTES + big + 64 for w in rec.writes)
