"""Tests of the node's on-disk sliver store: durability, integrity, capacity, errors, threads."""

import errno
import os
import signal
import stat
import subprocess
import sys
import threading
import textwrap
from pathlib import Path

import pytest

from p2pwalrus.errors import CapacityExceededError, InvalidBlobIdError, StorageError
from p2pwalrus.node.sliver_store import HEADER_LEN, PRIMARY, SECONDARY, SliverStore

A = bytes(range(32))
B = bytes(range(1, 33))


def blob_dir(root: Path, blob_id: bytes) -> Path:
    return root / "blobs" / blob_id.hex()


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def fill(store: SliverStore) -> None:
    store.put_metadata(A, b"meta-a")
    store.put_sliver(A, 0, PRIMARY, b"p0" * 100)
    store.put_sliver(A, 0, SECONDARY, b"s0" * 50)
    store.put_sliver(A, 7, SECONDARY, b"s7")
    store.put_certificate(A, b"cert-a")
    store.set_state(A, {"end_epoch": 5, "certified": False})
    store.put_sliver(B, 3, PRIMARY, b"")


def check_filled(store: SliverStore) -> None:
    assert store.get_metadata(A) == b"meta-a"
    assert store.get_sliver(A, 0, PRIMARY) == b"p0" * 100
    assert store.get_sliver(A, 0, SECONDARY) == b"s0" * 50
    assert store.get_sliver(A, 7, SECONDARY) == b"s7"
    assert store.get_sliver(A, 7, PRIMARY) is None
    assert store.get_certificate(A) == b"cert-a"
    assert store.get_state(A) == {"end_epoch": 5, "certified": False}
    assert store.get_sliver(B, 3, PRIMARY) == b""
    assert store.shards_stored(A) == {0: {PRIMARY, SECONDARY}, 7: {SECONDARY}}
    assert store.list_blobs() == sorted([A, B])


def test_round_trip_of_metadata_slivers_state_and_certificate(tmp_path):
    store = SliverStore(tmp_path)
    fill(store)
    check_filled(store)
    assert store.has_sliver(A, 0, PRIMARY) and not store.has_sliver(A, 7, PRIMARY)
    assert store.has_blob(A) and not store.has_blob(bytes(32))
    assert store.set_state(A, {"certified": True}) == {"end_epoch": 5, "certified": True}
    assert store.get_state(A) == {"end_epoch": 5, "certified": True}
    store.put_sliver(A, 0, PRIMARY, b"replaced")
    assert store.get_sliver(A, 0, PRIMARY) == b"replaced"


def test_missing_entries_read_as_none_or_empty(tmp_path):
    store = SliverStore(tmp_path)
    assert store.get_metadata(A) is None
    assert store.get_sliver(A, 0, PRIMARY) is None
    assert store.get_certificate(A) is None
    assert store.get_state(A) == {}
    assert store.shards_stored(A) == {}
    assert store.list_blobs() == []
    assert store.delete_blob(A) is False
    assert store.delete_sliver(A, 0) is False


def test_bytes_used_counts_files_on_disk_including_headers(tmp_path):
    store = SliverStore(tmp_path)
    fill(store)
    on_disk = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    assert store.bytes_used() == on_disk
    store.put_sliver(A, 0, PRIMARY, b"x")  # replacing counts only the new size
    on_disk = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    assert store.bytes_used() == on_disk


def test_reopen_restores_everything_including_bytes_used(tmp_path):
    store = SliverStore(tmp_path, capacity_bytes=10_000)
    fill(store)
    used = store.bytes_used()
    store.close()
    again = SliverStore(tmp_path, capacity_bytes=10_000)
    check_filled(again)
    assert again.bytes_used() == used


def test_closed_store_refuses_use(tmp_path):
    with SliverStore(tmp_path) as store:
        store.put_metadata(A, b"m")
    with pytest.raises(StorageError, match="closed"):
        store.put_metadata(A, b"m")
    with pytest.raises(StorageError, match="closed"):
        store.get_metadata(A)


def test_invalid_arguments_are_refused(tmp_path):
    store = SliverStore(tmp_path)
    with pytest.raises(InvalidBlobIdError):
        store.put_metadata(b"short", b"m")
    with pytest.raises(InvalidBlobIdError):
        store.get_metadata(A.hex())
    with pytest.raises(ValueError):
        store.put_sliver(A, -1, PRIMARY, b"x")
    with pytest.raises(ValueError):
        store.put_sliver(A, 0, "tertiary", b"x")
    with pytest.raises(TypeError):
        store.set_state(A, {"x": object()})
    assert all_files(tmp_path) == []


# ---- crash safety ---------------------------------------------------------------------


def test_leftover_temp_files_are_removed_at_open_and_stored_data_survives(tmp_path):
    store = SliverStore(tmp_path)
    fill(store)
    d = blob_dir(tmp_path, A)
    (d / "p0.deadbeef.tmp").write_bytes(b"half of a new sliv")  # crash mid-replace
    (d / "p9.cafe.tmp").write_bytes(b"PWS1")  # crash mid-first-write
    fresh = blob_dir(tmp_path, bytes(32))
    fresh.mkdir()
    (fresh / "meta.1.tmp").write_bytes(b"x")  # crash during a new blob's first write
    again = SliverStore(tmp_path)
    check_filled(again)
    assert not list(tmp_path.rglob("*.tmp"))
    assert not fresh.exists()
    assert again.bytes_used() == store.bytes_used()


def test_failed_rename_keeps_previous_content_and_leaves_no_partial_entry(tmp_path, monkeypatch):
    store = SliverStore(tmp_path)
    fill(store)
    before, used = all_files(tmp_path), store.bytes_used()

    def crash(src, dst):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(StorageError, match="p0"):
        store.put_sliver(A, 0, PRIMARY, b"new content")
    with pytest.raises(StorageError):
        store.put_sliver(bytes(32), 1, PRIMARY, b"new blob")
    monkeypatch.undo()
    assert all_files(tmp_path) == before
    assert store.bytes_used() == used
    assert not store.has_blob(bytes(32))
    check_filled(store)
    check_filled(SliverStore(tmp_path))


def test_crash_mid_delete_finishes_the_delete_at_open(tmp_path):
    store = SliverStore(tmp_path)
    fill(store)
    # delete_blob renames the blob dir into trash/ first; simulate dying right after that.
    os.replace(blob_dir(tmp_path, A), tmp_path / "trash" / (A.hex() + ".1234"))
    again = SliverStore(tmp_path)
    assert again.list_blobs() == [B]
    assert not any((tmp_path / "trash").iterdir())
    assert again.bytes_used() == sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())


CHILD = textwrap.dedent("""
    import sys
    from p2pwalrus.node.sliver_store import SliverStore, PRIMARY
    store = SliverStore(sys.argv[1])
    i = 0
    while True:
        store.put_sliver(bytes([i % 4]) * 32, i, PRIMARY, bytes([i % 251]) * (20_000 + i))
        print(i, flush=True)  # acknowledged only once put_sliver has returned
        i += 1
""")


def _kill_writer_after_30_acks(tmp_path, child: str) -> tuple[list[int], SliverStore]:
    """Run ``child`` (it writes to a store and prints each write's number once it returned),
    SIGKILL it after 30 acknowledgements, and open the store it left."""
    repo = str(Path(__file__).resolve().parents[1])
    paths = [repo, os.environ.get("PYTHONPATH")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    store_dir, stderr_path = tmp_path / "store", tmp_path / "child.err"
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", child, str(store_dir)],
                                stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    acked = []
    try:
        for line in proc.stdout:
            acked.append(int(line))
            if len(acked) >= 30:
                break
        running_when_killed = proc.poll() is None
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    # Without these, a child that died at once (an import error, say) acknowledged nothing
    # and the checks after it passed on an empty store.
    assert acked == list(range(30)), f"the child acknowledged {acked}: {stderr_path.read_text()[-2000:]}"
    assert running_when_killed and proc.returncode == -signal.SIGKILL, "the child must die of SIGKILL, mid-writes"
    return acked, SliverStore(store_dir)


def test_process_killed_mid_writes_loses_nothing_acknowledged(tmp_path):
    acked, store = _kill_writer_after_30_acks(tmp_path, CHILD)
    for i in acked:
        assert store.get_sliver(bytes([i % 4]) * 32, i, PRIMARY) == bytes([i % 251]) * (20_000 + i), f"write {i} lost"
    assert set(acked) <= {shard for blob in store.list_blobs() for shard in store.shards_stored(blob)}
    for blob in store.list_blobs():  # whatever else is visible is whole, never torn
        for shard in store.shards_stored(blob):
            assert store.get_sliver(blob, shard, PRIMARY) == bytes([shard % 251]) * (20_000 + shard)
    assert not list((tmp_path / "store").rglob("*.tmp"))


# ---- integrity ------------------------------------------------------------------------


def test_corrupted_file_is_detected_dropped_and_never_returned(tmp_path, caplog):
    store = SliverStore(tmp_path)
    fill(store)
    path = blob_dir(tmp_path, A) / "p0"
    raw = bytearray(path.read_bytes())
    raw[HEADER_LEN + 10] ^= 0x01
    path.write_bytes(raw)
    used = store.bytes_used()
    assert store.get_sliver(A, 0, PRIMARY) is None
    assert "checksum mismatch" in caplog.text and str(path) in caplog.text
    assert not store.has_sliver(A, 0, PRIMARY)  # so repair sees it missing
    assert store.bytes_used() == used - len(raw)
    assert store.get_sliver(A, 0, SECONDARY) == b"s0" * 50


def test_truncated_file_is_detected(tmp_path):
    store = SliverStore(tmp_path)
    fill(store)
    meta = blob_dir(tmp_path, A) / "meta"
    meta.write_bytes(meta.read_bytes()[:10])
    assert store.get_metadata(A) is None
    sliver = blob_dir(tmp_path, A) / "s7"
    sliver.write_bytes(sliver.read_bytes()[:-1])
    assert SliverStore(tmp_path).get_sliver(A, 7, SECONDARY) is None


def test_corrupted_state_reads_as_empty(tmp_path):
    store = SliverStore(tmp_path)
    fill(store)
    (blob_dir(tmp_path, A) / "state").write_bytes(b'{"end_epoch": 9}')
    assert store.get_state(A) == {}


# ---- capacity -------------------------------------------------------------------------


def test_capacity_is_refused_before_writing(tmp_path):
    store = SliverStore(tmp_path, capacity_bytes=2 * HEADER_LEN + 150)
    store.put_sliver(A, 0, PRIMARY, b"x" * 100)
    before = all_files(tmp_path)
    with pytest.raises(CapacityExceededError, match="capacity"):
        store.put_sliver(A, 1, PRIMARY, b"x" * 51)
    with pytest.raises(CapacityExceededError):
        store.put_metadata(B, b"x" * 51)
    assert all_files(tmp_path) == before
    assert store.list_blobs() == [A]
    assert store.bytes_used() == HEADER_LEN + 100
    store.put_sliver(A, 1, PRIMARY, b"x" * 50)  # exactly fits
    assert store.bytes_used() == store.capacity_bytes


def test_replacing_a_file_only_needs_room_for_the_difference(tmp_path):
    store = SliverStore(tmp_path, capacity_bytes=HEADER_LEN + 100)
    store.put_sliver(A, 0, PRIMARY, b"x" * 100)
    store.put_sliver(A, 0, PRIMARY, b"y" * 100)
    assert store.get_sliver(A, 0, PRIMARY) == b"y" * 100


def test_state_updates_are_never_refused_for_capacity(tmp_path):
    store = SliverStore(tmp_path, capacity_bytes=HEADER_LEN + 10)
    store.put_metadata(A, b"x" * 10)
    store.set_state(A, {"invalid": True})
    assert store.get_state(A) == {"invalid": True}


def test_delete_blob_frees_capacity(tmp_path):
    store = SliverStore(tmp_path, capacity_bytes=1000)
    fill(store)
    used_by_b = HEADER_LEN
    assert store.delete_blob(A) is True
    assert store.bytes_used() == used_by_b
    assert store.list_blobs() == [B]
    assert not blob_dir(tmp_path, A).exists()
    assert store.get_metadata(A) is None and store.get_state(A) == {}
    store.put_sliver(A, 0, PRIMARY, b"z" * (1000 - 2 * HEADER_LEN))
    assert SliverStore(tmp_path).bytes_used() == 1000


def test_delete_sliver_removes_one_or_both_kinds(tmp_path):
    store = SliverStore(tmp_path)
    fill(store)
    used = store.bytes_used()
    assert store.delete_sliver(A, 0, PRIMARY) is True
    assert store.shards_stored(A) == {0: {SECONDARY}, 7: {SECONDARY}}
    assert store.delete_sliver(A, 0) is True
    assert store.delete_sliver(A, 0) is False
    assert store.bytes_used() == used - (HEADER_LEN + 200) - (HEADER_LEN + 100)
    assert store.delete_sliver(B, 3) is True
    assert store.list_blobs() == [A]  # a blob with nothing left is gone
    assert not blob_dir(tmp_path, B).exists()


# ---- OS errors ------------------------------------------------------------------------


def _fail_temp_open(monkeypatch, err):
    real_open = os.open

    def fake_open(path, flags, *args, **kwargs):
        if str(path).endswith(".tmp"):
            raise OSError(err, os.strerror(err), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)


def test_permission_denied_is_a_clear_storage_error(tmp_path, monkeypatch):
    store = SliverStore(tmp_path)
    store.put_sliver(A, 0, PRIMARY, b"kept")
    d = blob_dir(tmp_path, A)
    if os.geteuid() != 0:  # a real read-only directory
        d.chmod(0o500)
        try:
            with pytest.raises(StorageError, match="permission denied") as info:
                store.put_sliver(A, 1, PRIMARY, b"x")
        finally:
            d.chmod(0o700)
    else:  # root ignores directory modes: simulate what the kernel would say
        _fail_temp_open(monkeypatch, errno.EACCES)
        with pytest.raises(StorageError, match="permission denied") as info:
            store.put_sliver(A, 1, PRIMARY, b"x")
        monkeypatch.undo()
    assert str(d) in str(info.value) and "writable" in str(info.value)
    assert not store.has_sliver(A, 1, PRIMARY)
    assert not list(tmp_path.rglob("*.tmp"))
    assert store.get_sliver(A, 0, PRIMARY) == b"kept"


def test_read_only_file_system_is_a_clear_storage_error(tmp_path, monkeypatch):
    store = SliverStore(tmp_path)
    _fail_temp_open(monkeypatch, errno.EROFS)
    with pytest.raises(StorageError, match="read-only"):
        store.put_metadata(A, b"m")
    monkeypatch.undo()
    assert store.list_blobs() == [] and all_files(tmp_path) == []


def test_disk_full_on_create_is_a_clear_storage_error(tmp_path, monkeypatch):
    store = SliverStore(tmp_path)
    _fail_temp_open(monkeypatch, errno.ENOSPC)
    with pytest.raises(StorageError, match="disk is full"):
        store.put_metadata(A, b"m")
    monkeypatch.undo()
    assert store.list_blobs() == [] and store.bytes_used() == 0


def test_disk_full_during_write_leaves_no_partial_file(tmp_path, monkeypatch):
    store = SliverStore(tmp_path)
    fill(store)
    before, used = all_files(tmp_path), store.bytes_used()
    real_fsync = os.fsync

    def fsync_enospc(fd):
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_size > 1000:  # the large sliver, not a dir
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_enospc)
    with pytest.raises(StorageError, match="disk is full") as info:
        store.put_sliver(A, 0, PRIMARY, b"big" * 1000)
    assert str(blob_dir(tmp_path, A) / "p0") in str(info.value)
    with pytest.raises(StorageError, match="disk is full"):
        store.put_sliver(bytes(32), 0, PRIMARY, b"big" * 1000)
    monkeypatch.undo()
    assert all_files(tmp_path) == before
    assert store.bytes_used() == used
    assert store.list_blobs() == sorted([A, B])
    check_filled(store)


def test_unwritable_root_at_open_is_a_clear_storage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(StorageError, match="open the sliver store"):
        SliverStore(blocker / "store")


# ---- threads --------------------------------------------------------------------------


def test_concurrent_puts_from_threads_are_all_stored_and_counted(tmp_path):
    store = SliverStore(tmp_path)
    errors = []

    def worker(t):
        try:
            for i in range(25):
                blob = bytes([i % 5]) * 32
                store.put_sliver(blob, t * 100 + i, PRIMARY, bytes([t]) * (1000 + i))
                store.set_state(blob, {f"t{t}": i})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    for t in range(8):
        for i in range(25):
            got = store.get_sliver(bytes([i % 5]) * 32, t * 100 + i, PRIMARY)
            assert got == bytes([t]) * (1000 + i)
    for k in range(5):  # no lost state update: every thread's last write to each blob is there
        state = store.get_state(bytes([k]) * 32)
        assert state == {f"t{t}": max(i for i in range(25) if i % 5 == k) for t in range(8)}
    on_disk = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    assert store.bytes_used() == on_disk == SliverStore(tmp_path).bytes_used()


def test_concurrent_puts_never_overshoot_capacity(tmp_path):
    size = 1000
    store = SliverStore(tmp_path, capacity_bytes=10 * (HEADER_LEN + size))
    outcomes = []

    def worker(t):
        try:
            store.put_sliver(A, t, PRIMARY, b"x" * size)
            outcomes.append("ok")
        except CapacityExceededError:
            outcomes.append("full")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(30)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert outcomes.count("ok") == 10 and outcomes.count("full") == 20
    assert store.bytes_used() == store.capacity_bytes


def test_delete_racing_with_puts_leaves_a_consistent_store(tmp_path):
    store = SliverStore(tmp_path)
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            store.put_sliver(A, i % 50, PRIMARY, b"w" * 5000)
            i += 1

    th = threading.Thread(target=writer)
    th.start()
    try:
        for _ in range(30):
            store.delete_blob(A)
    finally:
        stop.set()
        th.join()
    on_disk = sum(p.stat().st_size for p in (tmp_path / "blobs").rglob("*") if p.is_file())
    assert store.bytes_used() == on_disk
    again = SliverStore(tmp_path)
    assert again.bytes_used() == on_disk
    for shard in again.shards_stored(A):
        assert again.get_sliver(A, shard, PRIMARY) == b"w" * 5000


# ---- group commit of a store request (put_slivers) ---------------------------------------

import hashlib  # noqa: E402

from p2pwalrus.node import sliver_store  # noqa: E402
from p2pwalrus.node.sliver_store import HEADER2_LEN, SymbolLeaves  # noqa: E402


def leaves_of(data: bytes, chunk: int) -> SymbolLeaves:
    return SymbolLeaves(chunk, b"".join(hashlib.blake2b(b"\0" + data[i:i + chunk], digest_size=32).digest()
                                        for i in range(0, len(data), chunk)))


def request(t: int = 0, chunk: int = 6):
    p, s = bytes([t, 1]) * 600, bytes([t, 2]) * 300
    return [(t, PRIMARY, p, leaves_of(p, chunk)), (t, SECONDARY, s, leaves_of(s, chunk)),
            (t + 1, PRIMARY, b"plain" * 7, None), (t + 1, SECONDARY, b"", leaves_of(b"", chunk))]


def test_put_slivers_stores_a_request_with_metadata_and_state_in_one_commit(tmp_path, monkeypatch):
    store = SliverStore(tmp_path)
    dir_syncs = []
    real = sliver_store._fsync_dir
    monkeypatch.setattr(sliver_store, "_fsync_dir", lambda p: (dir_syncs.append(p), real(p)))
    seen = []

    def update(state):
        seen.append(state)
        return {"end_epoch": max(5, state.get("end_epoch", 0)), "owner": "me"}

    assert store.put_slivers(A, request(), metadata=b"meta-a", update_state=update)
    # One fsync of the new blob's directory entry in blobs/, one of the blob directory.
    assert dir_syncs == [tmp_path / "blobs", blob_dir(tmp_path, A)]
    dir_syncs.clear()
    assert store.put_slivers(A, request(4, chunk=1000), metadata=b"meta-other", update_state=update)
    assert dir_syncs == [blob_dir(tmp_path, A)]
    for again in (store, SliverStore(tmp_path)):
        for t, chunk in ((0, 6), (4, 1000)):
            for shard, kind, data, _ in request(t, chunk):
                assert again.get_sliver(A, shard, kind) == data
        assert again.get_metadata(A) == b"meta-a"  # kept: not rewritten by a later request
        assert again.get_state(A) == {"end_epoch": 5, "owner": "me"}
        assert again.shards_stored(A) == {s: {PRIMARY, SECONDARY} for s in (0, 1, 4, 5)}
        on_disk = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
        assert again.bytes_used() == on_disk
    assert seen == [{}, {"end_epoch": 5, "owner": "me"}]
    raw = (blob_dir(tmp_path, A) / "p0").read_bytes()
    assert raw[:4] == b"PWS2" and len(raw) == HEADER2_LEN + 1200
    assert (blob_dir(tmp_path, A) / "p1").read_bytes()[:4] == b"PWS1"  # no leaves given
    assert not list(tmp_path.rglob("*.tmp"))
    with pytest.raises(ValueError, match="twice"):
        store.put_slivers(A, request() + request()[:1])


@pytest.mark.parametrize("where", ["magic", "digest", "chunk", "first", "middle", "last",
                                   "truncate", "extend", "tail-chunk"])
def test_any_damage_to_a_pws2_file_is_detected(tmp_path, where):
    store = SliverStore(tmp_path)
    data = os.urandom(1000)  # 1000 = 166 chunks of 6 and a short one of 4
    store.put_slivers(A, [(0, PRIMARY, data, leaves_of(data, 6))])
    path = blob_dir(tmp_path, A) / "p0"
    raw = bytearray(path.read_bytes())
    if where == "truncate":
        raw = raw[:-1]
    elif where == "extend":
        raw += b"\0"
    else:
        pos = {"magic": 3, "digest": 20, "chunk": HEADER_LEN, "first": HEADER2_LEN,
               "middle": HEADER2_LEN + 500, "last": len(raw) - 1, "tail-chunk": len(raw) - 3}[where]
        raw[pos] ^= 0x10
    path.write_bytes(bytes(raw))
    assert store.get_sliver(A, 0, PRIMARY) is None
    assert not store.has_sliver(A, 0, PRIMARY)


def test_leaves_that_are_not_of_the_data_make_a_file_that_reads_as_corrupt(tmp_path):
    store = SliverStore(tmp_path)
    store.put_slivers(A, [(0, PRIMARY, b"a" * 12, leaves_of(b"b" * 12, 6))])
    assert store.get_sliver(A, 0, PRIMARY) is None  # never served as data
    with pytest.raises(ValueError, match="leaf hashes"):
        store.put_slivers(A, [(0, PRIMARY, b"a" * 13, leaves_of(b"a" * 12, 6))])  # 3 chunks, 2 leaves
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_failed_write_in_a_group_commits_nothing(tmp_path, monkeypatch):
    store = SliverStore(tmp_path)
    fill(store)
    before, used = all_files(tmp_path), store.bytes_used()
    real_fsync = os.fsync

    def fsync_enospc(fd):
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_size > 1000:  # the primary sliver only
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_enospc)
    for blob in (A, bytes(32)):
        with pytest.raises(StorageError, match="disk is full"):
            store.put_slivers(blob, request(20), metadata=b"m", update_state=lambda s: {"x": 1})
    monkeypatch.undo()
    assert all_files(tmp_path) == before
    assert store.bytes_used() == used
    check_filled(store)


def test_a_group_commit_over_capacity_is_refused_whole(tmp_path):
    store = SliverStore(tmp_path, capacity_bytes=HEADER2_LEN * 2 + 1500)
    with pytest.raises(CapacityExceededError):
        store.put_slivers(A, request())  # 1200 + 600 + 35 + 0 bytes of content
    assert store.bytes_used() == 0 and all_files(tmp_path) == []
    assert store.put_slivers(A, request()[:1])


CHILD_GROUP = textwrap.dedent("""
    import hashlib, sys
    from p2pwalrus.node.sliver_store import SliverStore, SymbolLeaves, PRIMARY, SECONDARY
    def leaves(data):
        return SymbolLeaves(100, b"".join(hashlib.blake2b(b"\\0" + data[i:i + 100], digest_size=32).digest()
                                          for i in range(0, len(data), 100)))
    store = SliverStore(sys.argv[1])
    i = 0
    while True:
        slivers = [(3 * i + k, kind, bytes([(3 * i + k) % 251]) * (20_000 + i), None if k == 2 else leaves(bytes([(3 * i + k) % 251]) * (20_000 + i)))
                   for k, kind in ((0, PRIMARY), (1, PRIMARY), (2, SECONDARY))]
        store.put_slivers(bytes([i % 4]) * 32, slivers, metadata=b"m%d" % i,
                          update_state=lambda s: {"n": s.get("n", 0) + 1})
        print(i, flush=True)  # acknowledged only once put_slivers has returned
        i += 1
""")


def test_process_killed_mid_group_commits_loses_nothing_acknowledged(tmp_path):
    acked, store = _kill_writer_after_30_acks(tmp_path, CHILD_GROUP)

    def expected(shard):
        return bytes([shard % 251]) * (20_000 + shard // 3)

    for i in acked:
        blob = bytes([i % 4]) * 32
        assert store.get_sliver(blob, 3 * i, PRIMARY) == expected(3 * i), f"request {i} lost"
        assert store.get_sliver(blob, 3 * i + 1, PRIMARY) == expected(3 * i + 1), f"request {i} lost"
        assert store.get_sliver(blob, 3 * i + 2, SECONDARY) == expected(3 * i + 2), f"request {i} lost"
        assert store.get_metadata(blob) == b"m%d" % (i % 4)
        assert store.get_state(blob)["n"] >= len([j for j in acked if j % 4 == i % 4])
    for blob in store.list_blobs():  # whatever else is visible is whole, never torn
        for shard, kinds in store.shards_stored(blob).items():
            for kind in kinds:
                assert store.get_sliver(blob, shard, kind) == expected(shard)
    assert not list((tmp_path / "store").rglob("*.tmp"))


# ---- large contents: O_DIRECT where the file system takes it, else buffered -------------


@pytest.mark.parametrize("size", [256 * 1024, 300_001, 3 * 1024 * 1024 + 7, 9 * 1024 * 1024 + 1])
@pytest.mark.parametrize("refuse_direct", [False, True])
def test_large_slivers_are_written_whole_with_or_without_o_direct(tmp_path, monkeypatch, size, refuse_direct):
    """Contents from 256 KiB go through an aligned buffer with O_DIRECT, padded to 4 KiB and
    cut back to their size; a file system that refuses O_DIRECT (tmpfs) gets the buffered
    write. Either way the file reads back exactly and survives a reopen."""
    import fcntl

    from p2pwalrus.node import sliver_format

    taken = []
    real_direct = sliver_format._write_direct

    def spy(fd, header, data):
        ok = real_direct(fd, header, data)
        taken.append(ok)
        return ok

    monkeypatch.setattr(sliver_format, "_write_direct", spy)
    if refuse_direct:
        real_fcntl = fcntl.fcntl

        def no_direct(fd, cmd, arg=0):
            if cmd == fcntl.F_SETFL and arg & os.O_DIRECT:
                raise OSError(errno.EINVAL, "Invalid argument")
            return real_fcntl(fd, cmd, arg)

        monkeypatch.setattr(fcntl, "fcntl", no_direct)
    data = os.urandom(size)
    store = SliverStore(tmp_path)
    assert store.put_slivers(A, [(3, PRIMARY, data, None), (3, SECONDARY, data[::-1], None)])
    assert store.get_sliver(A, 3, PRIMARY) == data and store.get_sliver(A, 3, SECONDARY) == data[::-1]
    assert (blob_dir(tmp_path, A) / "p3").stat().st_size == HEADER_LEN + size  # the padding cut off
    store.close()
    again = SliverStore(tmp_path)
    assert again.get_sliver(A, 3, PRIMARY) == data and again.get_sliver(A, 3, SECONDARY) == data[::-1]
    assert all_files(tmp_path) == ["blobs/" + A.hex() + "/p3", "blobs/" + A.hex() + "/s3"]
    if hasattr(os, "O_DIRECT"):
        assert len(taken) == 2
        if refuse_direct:
            assert not any(taken)  # then written buffered, as checked above
        elif _takes_o_direct(tmp_path):
            assert all(taken)


def _takes_o_direct(where: Path) -> bool:
    import fcntl

    fd = os.open(where / "probe", os.O_WRONLY | os.O_CREAT)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_DIRECT)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
        os.unlink(where / "probe")


# ---- recently stored primary slivers kept in memory (a node's SliverStore) --------------


def test_recent_primaries_are_served_while_their_file_is_unchanged_and_the_disk_decides_after(tmp_path):
    store = SliverStore(tmp_path, recent_bytes=1000)
    p, q = os.urandom(400), os.urandom(400)
    assert store.put_slivers(A, [(0, PRIMARY, p, None), (0, SECONDARY, q, None), (1, PRIMARY, q, None)])
    assert store._recent_bytes == 800  # the two primaries; secondaries are not kept
    assert store.get_sliver(A, 0, PRIMARY) == p and store.get_sliver(A, 0, SECONDARY) == q
    # A changed file (another size, or another mtime) is read from disk: damage is still caught.
    path = blob_dir(tmp_path, A) / "p0"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(1, 1))
    assert store.get_sliver(A, 0, PRIMARY) is None and not path.exists()
    assert store._recent_bytes == 400
    # Deletes forget them too; the cap evicts the oldest.
    assert store.delete_sliver(A, 1, PRIMARY) and store.get_sliver(A, 1, PRIMARY) is None
    assert store._recent_bytes == 0
    assert store.put_slivers(B, [(2, PRIMARY, p, None), (3, PRIMARY, q, None), (4, PRIMARY, p[:300], None)])
    assert store._recent_bytes == 700 and (B.hex(), "p2") not in store._recent
    assert store.get_sliver(B, 2, PRIMARY) == p  # from disk
    assert store.delete_blob(B) and store._recent_bytes == 0 and store.get_sliver(B, 3, PRIMARY) is None


def test_only_the_primaries_named_are_kept_in_memory(tmp_path):
    store = SliverStore(tmp_path, recent_bytes=1000)
    p, q = os.urandom(300), os.urandom(200)
    assert store.put_slivers(A, [(0, PRIMARY, p, None), (1, PRIMARY, q, None), (1, SECONDARY, q, None)],
                             remember=[1])
    assert store._recent_bytes == 200 and set(store._recent) == {(A.hex(), "p1")}
    assert store.get_sliver(A, 0, PRIMARY) == p  # from disk, as any other file
    assert store.put_slivers(B, [(5, PRIMARY, p, None)], remember=[]) and store._recent_bytes == 200


def test_a_store_request_keeps_only_its_systematic_primary_slivers_in_memory(tmp_path):
    from p2pwalrus.core import rs2
    from p2pwalrus.node.store_pairs import persist_pairs, verify_pairs

    n = 10
    data = os.urandom(5000)
    enc = rs2.encode_blob(data, n)
    blob_id = enc.blob_id
    owned = [(pair, rs2.shard_for_pair(pair, blob_id, n), enc.primary_sliver(pair), enc.secondary_sliver(pair))
             for pair in range(n)]
    good, refused = verify_pairs(enc.metadata, owned)
    assert not refused
    store = SliverStore(tmp_path, recent_bytes=1 << 20)
    assert sorted(persist_pairs(store, enc.metadata, blob_id, good, lambda state: {})) == list(range(n))
    systematic = {rs2.shard_for_pair(pair, blob_id, n) for pair in range(enc.metadata.config.n_primary)}
    assert {name for _, name in store._recent} == {f"p{shard}" for shard in systematic}
