"""Blocks written as they arrive (BlockSpill), then read back and hashed without a second write."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from torrent.codec.metainfo import FileEntry, Metainfo
from torrent.core.errors import StorageError
from torrent.storage.files import Storage
from torrent.storage.spill import BlockSpill

PL = 4 * 16384  # four blocks a piece
BLOCK = 16384


def make_meta() -> tuple[Metainfo, bytes]:
    """Two files with a pad file between them: piece 1 ends in the pad's zeros."""
    rng = random.Random(7)
    a, pad, b = rng.randbytes(PL + 3 * BLOCK), bytes(BLOCK), rng.randbytes(2 * PL + 100)
    data = a + pad + b
    entries = (FileEntry(("t", "a"), len(a), 0), FileEntry(("t", ".pad", "0"), len(pad), len(a), "p"),
               FileEntry(("t", "b"), len(b), len(a) + len(pad)))
    pieces = b"".join(hashlib.sha1(data[i:i + PL]).digest() for i in range(0, len(data), PL))
    return Metainfo(info_hash=hashlib.sha1(pieces).digest(), name="t", piece_length=PL, pieces=pieces,
                    files=entries, multi_file=True), data


def blocks_of(meta: Metainfo, data: bytes, index: int) -> list[tuple[int, int, bytes]]:
    start, end = meta.geometry.piece_span(index)
    return [(index, begin, data[start + begin:min(end, start + begin + BLOCK)])
            for begin in range(0, end - start, BLOCK)]


def spill_all(store: Storage, writes: list[tuple[int, int, bytes]], seal_after: dict[int, int]) -> tuple[
        list[int], list[StorageError], int]:
    """Queue ``writes`` in order, each piece's last at the position ``seal_after`` gives it; returns the
    pieces reported complete (in order), the failures, and the bytes queued at the end."""
    complete: list[int] = []
    failures: list[StorageError] = []

    async def main() -> int:
        done = asyncio.Event()
        expected = set(seal_after)

        def written(nbytes: int, pieces: list[int]) -> None:
            complete.extend(pieces)
            if set(complete) >= expected:
                done.set()

        def failed(exc: StorageError) -> None:
            failures.append(exc)
            done.set()

        with ThreadPoolExecutor(2) as executor:
            spill = BlockSpill(store, executor, written, failed)
            for position, (index, begin, block) in enumerate(writes):
                spill.write(index, begin, block, last=seal_after.get(index) == position)
            await asyncio.wait_for(done.wait(), 10)
            await asyncio.sleep(0.05)  # anything reported after the failure would show now
            return spill.queued_bytes

    queued = asyncio.run(main())
    return complete, failures, queued


def test_a_piece_is_reported_once_its_blocks_are_on_disk_and_read_back_without_a_second_write(tmp_path: Path) -> None:
    meta, data = make_meta()
    store = Storage(meta, tmp_path)
    writes = [w for i in (2, 0, 1) for w in blocks_of(meta, data, i)]
    random.Random(3).shuffle(writes)  # blocks of the three pieces interleaved, out of order
    last = {index: max(p for p, w in enumerate(writes) if w[0] == index) for index in (0, 1, 2)}
    complete, failures, queued = spill_all(store, writes, last)
    assert not failures and queued == 0
    assert sorted(complete) == [0, 1, 2] and len(complete) == 3
    # Not written again once verified: the files keep the mtime set after the blocks landed.
    old = 1_000_000_000_000_000_000
    for path in store.paths:
        if path is not None:
            os.utime(path, ns=(old, old))
    dirty = [bytearray(b"\xff" * meta.geometry.piece_size(i)) for i in (0, 1, 2)]  # reused buffers: not zeros
    results = store.verify_and_write_many(list(zip((0, 1, 2), dirty)), on_disk=[0, 1, 2])
    assert results == [True, True, True]
    assert [bytes(buf) for buf in dirty] == [data[slice(*meta.geometry.piece_span(i))] for i in (0, 1, 2)]
    assert all(p.stat().st_mtime_ns == old for p in store.paths if p is not None)
    store.close()


def test_a_corrupt_block_on_disk_fails_the_hash_and_an_in_memory_piece_beside_it_is_still_written(
        tmp_path: Path) -> None:
    meta, data = make_meta()
    store = Storage(meta, tmp_path)
    writes = blocks_of(meta, data, 0)
    index, begin, block = writes[2]
    writes[2] = (index, begin, bytes(b ^ 1 for b in block))
    complete, failures, _ = spill_all(store, writes, {0: len(writes) - 1})
    assert complete == [0] and not failures
    piece3 = data[slice(*meta.geometry.piece_span(3))]
    results = store.verify_and_write_many([(0, bytearray(PL)), (3, piece3)], on_disk=[0])
    assert results == [False, True]
    start = meta.geometry.piece_span(3)[0] - (PL + 4 * BLOCK)
    assert (tmp_path / "t" / "b").read_bytes()[start:start + len(piece3)] == piece3
    store.close()


def test_a_failing_write_is_reported_once_and_nothing_after_it(tmp_path: Path) -> None:
    meta, data = make_meta()
    (tmp_path / "t").write_bytes(b"a file where the torrent's directory should be")
    store = Storage(meta, tmp_path)
    complete, failures, _ = spill_all(store, blocks_of(meta, data, 0) + blocks_of(meta, data, 2), {0: 3, 2: 7})
    assert len(failures) == 1 and complete == []
    assert "\n" not in str(failures[0])
    store.close()
