"""Reading a blob: its metadata and its systematic primary slivers, each verified as it
arrives, recovery rows asked in place of missing or late ones, decoding only when needed."""

from __future__ import annotations

import logging
import os
import random
import time

import trio

from ..core import messages as wire
from ..core import rs2, scratch
from ..core.blob_id import blob_id_to_str
from ..errors import InconsistentBlobError, NotEnoughShardsError, ProtocolError, VerificationError
from .common import BlobInvalidError, Progress

logger = logging.getLogger("p2pwalrus.client")

# A read asks a recovery row in place of a systematic one still outstanding this long after
# it was asked: READ_HEDGE_FACTOR times what the first half of the rows took, at least
# READ_HEDGE_MIN seconds (a hung holder otherwise holds the read for the 60 s sliver timeout).
READ_HEDGE_MIN = 2.0
READ_HEDGE_FACTOR = 3.0
READ_HEDGE_TICK = 0.25
# A systematic row that could not be had is asked of its holder once more after this pause
# (a read right after a store may reach a holder still writing it), while a recovery row
# stands in. Once R rows are in but not all systematic ones, the read waits for the missing
# ones up to about what decoding them would cost (DECODE_SECONDS_PER_BYTE of the blob: the
# codec took 0.64-0.76 s for 64 MiB at 66 shards, one row missing), between
# SYSTEMATIC_GRACE_MIN and SYSTEMATIC_GRACE_MAX seconds.
SYSTEMATIC_RETRY_PAUSE = 0.25
DECODE_SECONDS_PER_BYTE = 1e-8
SYSTEMATIC_GRACE_MIN, SYSTEMATIC_GRACE_MAX = 0.05, 1.0
VERIFY_THREADS = max(2, os.cpu_count() or 2)


class Reading:
    """Read blobs (part of `Client`)."""

    async def metadata(self, blob_id: bytes) -> rs2.BlobMetadata:
        n = self.net.n_shards
        holders = [self.shard_map.owner(s) for s in range(n)]
        peers = list(dict.fromkeys(holders))
        random.shuffle(peers)
        for peer in peers:
            try:
                reply, raw = await self.request_with_blob(peer, wire.GetMetadataRequest(blob_id), rs2.metadata_size(n))
            except Exception as exc:
                logger.debug("metadata from %s failed: %r", peer, exc)
                continue
            if reply.invalid and await self.proven_invalid(blob_id, peer):
                raise BlobInvalidError(f"blob {blob_id_to_str(blob_id)} is invalid")
            if raw is None:
                continue
            try:
                meta = rs2.BlobMetadata.from_bytes(raw)
                meta.verify_blob_id(blob_id)
                return meta
            except (ProtocolError, VerificationError) as exc:
                logger.warning("metadata from %s rejected: %s", peer, exc)
        raise NotEnoughShardsError("no holder returned valid metadata for this blob")

    async def _certified_metadata(self, blob_id: bytes) -> rs2.BlobMetadata:
        """`certified` and `metadata` at once (the metadata is checked against the blob ID, so it
        needs no certificate to be trusted): one round trip instead of two. A failure of the
        certificate lookup (not found, invalid, expired) wins over the metadata's."""
        failed: list[BaseException] = []
        got: list[rs2.BlobMetadata] = []

        async with trio.open_nursery() as nursery:
            async def certificate() -> None:
                try:
                    await self.certified(blob_id)
                except Exception as exc:
                    failed.insert(0, exc)
                    nursery.cancel_scope.cancel()

            async def metadata() -> None:
                try:
                    got.append(await self.metadata(blob_id))
                except Exception as exc:
                    failed.append(exc)

            nursery.start_soon(certificate)
            nursery.start_soon(metadata)
        if failed:
            raise failed[0]
        return got[0]

    async def _fetch_primary(self, meta: rs2.BlobMetadata, blob_id: bytes, pair: int, holder: str,
                             bad: dict[int, str], spent: dict[str, float] | None = None,
                             into: memoryview | None = None,
                             verifiers: trio.CapacityLimiter | None = None) -> bytes | memoryview | None:
        """Primary sliver `pair` from `holder`, verified (in a worker thread); None, noted in `bad`, if not.

        The verification's seconds are added to `spent["verify"]`. `into`: a buffer of the
        sliver's size that it is read into (and returned as). `verifiers`: the threads
        verifying may share (trio's default limiter otherwise)."""
        sliver_len = meta.config.n_secondary * meta.symbol_size
        try:
            reply, raw = await self.request_with_blob(holder, wire.GetSliverRequest(blob_id, pair, rs2.PRIMARY),
                                                      sliver_len, 60.0, into)
        except Exception as exc:
            bad[pair] = f"{holder[:16]}…: {exc!r}"
            return None
        if raw is None:
            if reply.invalid and await self.proven_invalid(blob_id, holder):
                raise BlobInvalidError(f"blob {blob_id_to_str(blob_id)} is invalid")
            bad[pair] = f"{holder[:16]}…: {reply.error}"
            return None
        t0 = time.perf_counter()
        try:
            await trio.to_thread.run_sync(rs2.verify_primary_sliver, meta, pair, raw, limiter=verifiers)
        except VerificationError as exc:
            logger.warning("primary sliver %d from %s is corrupt: %s", pair, holder, exc)
            bad[pair] = f"{holder[:16]}…: corrupt sliver"
            return None
        finally:
            if spent is not None:
                spent["verify"] = spent.get("verify", 0.0) + time.perf_counter() - t0
        return raw

    async def read(self, blob_id: bytes, *, strict: bool = False, progress: Progress | None = None) -> bytes:
        """The blob (see `read_parts`), as one bytes object."""
        parts = await self.read_parts(blob_id, strict=strict, progress=progress)
        if len(parts) == 1 and isinstance(parts[0], bytes):
            return parts[0]
        return await trio.to_thread.run_sync(b"".join, parts)

    async def read_parts(self, blob_id: bytes, *, strict: bool = False,
                         progress: Progress | None = None) -> list[bytes | memoryview]:
        """The blob as consecutive parts: views of its systematic primary slivers when all of
        them were had (no copy), else one bytes object. Read from its systematic primary
        slivers whenever their holders serve them.

        The R = n - 2f systematic primary slivers (rows 0..R-1) are the blob itself, padded:
        their holders are asked in parallel, and each sliver is verified in a worker thread as
        it arrives. A row that cannot be had or fails verification is replaced by a recovery
        row (R..n-1), holders that failed already asked last; so is a row still outstanding
        long after half of them arrived (READ_HEDGE_*). With every systematic row the blob is
        their concatenation; otherwise only the missing rows are decoded, from any R verified
        primary slivers.
        """
        progress = progress or Progress()
        t_start = time.perf_counter()
        if self.shard_map is None:
            await self.refresh_membership()
        meta = await self._certified_metadata(blob_id)
        t_fetch = time.perf_counter()
        spent: dict[str, float] = {}
        n, cfg = meta.n_shards, meta.config
        need = cfg.n_primary
        holder = {pair: self.shard_map.owner(rs2.shard_for_pair(pair, blob_id, n)) for pair in range(n)}
        # The systematic rows are read into one scratch buffer (core/scratch.py), in place:
        # the parts returned are views of it. Fresh bytes for each row faulted in the 67 MB of
        # a 64 MiB read in `p2pwalrus daemon` (its encodings keep their own scratch).
        sliver_len = cfg.n_secondary * meta.symbol_size
        rows = scratch.READS.empty((need, sliver_len))
        # As many verifying threads as cores: more gained nothing but the codec's and hashes'
        # temporaries of every row at once (24 rows of a 64 MiB blob: over 100 MB of fresh
        # pages in the daemon's first reads).
        verifiers = trio.CapacityLimiter(VERIFY_THREADS)
        good: dict[int, bytes | memoryview] = {}
        bad: dict[int, str] = {}
        spares = list(range(need, n))  # recovery rows, asked only in place of a systematic one
        failed_holders: set[str] = set()
        waiting: dict[int, float] = {}  # pair -> when it was asked; left out once a spare stands in
        in_flight = 0
        half_time: float | None = None  # how long the first half of the rows took to arrive
        invalid: BlobInvalidError | None = None
        retried: set[int] = set()  # systematic rows asked a second time
        grace = min(SYSTEMATIC_GRACE_MAX, max(SYSTEMATIC_GRACE_MIN, DECODE_SECONDS_PER_BYTE * meta.unencoded_length))
        started = trio.current_time()
        progress.start("reading", need * sliver_len)

        async with trio.open_nursery() as nursery:

            def ask(pair: int) -> None:
                nonlocal in_flight
                in_flight += 1
                waiting[pair] = trio.current_time()
                nursery.start_soon(fetch, pair)

            def ask_spare() -> None:
                if spares:
                    pick = next((p for p in spares if holder[p] not in failed_holders), spares[0])
                    spares.remove(pick)
                    ask(pick)

            def systematic_all_in() -> bool:
                return all(i in good for i in range(need))

            async def fetch(pair: int, pause: float = 0.0) -> None:
                nonlocal in_flight, half_time, invalid
                try:
                    await trio.sleep(pause)
                    try:
                        raw = await self._fetch_primary(meta, blob_id, pair, holder[pair], bad, spent,
                                                        memoryview(rows[pair]) if pair < need else None,
                                                        verifiers)
                    except BlobInvalidError as exc:  # raised below, outside the nursery's exception group
                        invalid = exc
                        nursery.cancel_scope.cancel()
                        return
                    stood_in = waiting.pop(pair, None) is None  # a spare was asked already
                    if raw is None:
                        logger.info("primary sliver %d could not be had: %s", pair, bad.get(pair))
                        failed_holders.add(holder[pair])
                        if not stood_in:
                            ask_spare()
                        if pair < need and pair not in retried and not strict:
                            retried.add(pair)
                            in_flight += 1
                            nursery.start_soon(fetch, pair, SYSTEMATIC_RETRY_PAUSE)
                    elif len(good) < need or (pair < need and pair not in good):
                        good[pair] = raw
                        progress.advance(len(raw) if len(good) <= need else 0)
                        if half_time is None and 2 * len(good) >= need:
                            half_time = trio.current_time() - started
                        if systematic_all_in() or (strict and len(good) >= need):
                            nursery.cancel_scope.cancel()
                        elif len(good) >= need:  # decodable: wait a little for the rows that spare it
                            nursery.cancel_scope.deadline = min(nursery.cancel_scope.deadline,
                                                                trio.current_time() + grace)
                finally:
                    in_flight -= 1
                    if in_flight == 0:  # nothing more can arrive: stop the hedging timer
                        nursery.cancel_scope.cancel()

            async def hedge() -> None:
                while True:
                    await trio.sleep(READ_HEDGE_TICK)
                    if half_time is None:
                        continue
                    late = trio.current_time() - max(READ_HEDGE_MIN, READ_HEDGE_FACTOR * half_time)
                    for pair, asked in list(waiting.items()):
                        if asked < late:
                            logger.info("primary sliver %d from %s is late: asking another", pair, holder[pair])
                            del waiting[pair]
                            ask_spare()

            for pair in range(need):
                ask(pair)
            nursery.start_soon(hedge)
        progress.done()
        if invalid is not None:
            raise invalid
        if len(good) < need:
            raise NotEnoughShardsError(
                f"got {len(good)} valid primary slivers of the {need} needed "
                f"({len(bad)} holders failed or lied)"
            )
        t_decode = time.perf_counter()
        if not strict and all(i in good for i in range(need)):
            parts = rs2.systematic_parts(meta, good)  # the blob itself: nothing to decode or join
        else:
            try:
                parts = [await trio.to_thread.run_sync(lambda: rs2.decode_primary(meta, good, strict=strict))]
            except InconsistentBlobError as exc:
                raise BlobInvalidError(f"blob {blob_id_to_str(blob_id)} is invalid: {exc}") from None
        # Shown by `p2pwalrus -v read` (bench/store_read.py parses it): verify runs in worker
        # threads while slivers arrive, so it is part of fetch, summed over the slivers.
        logger.info("read %d bytes: certificate+metadata %.3f s, fetch %.3f s (verify %.3f s, summed), decode %.3f s",
                    sum(len(p) for p in parts), t_fetch - t_start, t_decode - t_fetch, spent.get("verify", 0.0),
                    time.perf_counter() - t_decode)
        return parts
