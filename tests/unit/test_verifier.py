"""PieceVerifier: pieces that trickle in are still hashed a batch at a time, and none waits long."""

from __future__ import annotations

import asyncio
import hashlib
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from torrent.codec.metainfo import FileEntry, Metainfo
from torrent.storage import verifier as verifier_module
from torrent.storage.files import Storage
from torrent.storage.verifier import BATCH, HOLD_SECONDS, PieceVerifier

PL = 16384
PIECES = 12


class CountingStorage(Storage):
    """Records the size of every trip's batch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []

    def verify_and_write_many(self, pieces: Any, *, on_disk: Any = ()) -> Any:
        self.batches.append(len(pieces))
        return super().verify_and_write_many(pieces, on_disk=on_disk)


def make(tmp_path: Path) -> tuple[CountingStorage, list[bytes]]:
    rng = random.Random(3)
    data = [rng.randbytes(PL) for _ in range(PIECES)]
    pieces = b"".join(hashlib.sha1(piece).digest() for piece in data)
    meta = Metainfo(info_hash=hashlib.sha1(pieces).digest(), name="v", piece_length=PL, pieces=pieces,
                    files=(FileEntry(("v",), PL * PIECES, 0),), multi_file=False)
    return CountingStorage(meta, tmp_path), data


async def submit_and_wait(store: CountingStorage, submissions: list[tuple[int, bytes | None]], *,
                          gap: float = 0.0, hold: float | None = None) -> tuple[dict[int, Any], list[float]]:
    """Submit each (index, data) ``gap`` seconds apart; the results and how long each piece took."""
    loop = asyncio.get_running_loop()
    results: dict[int, Any] = {}
    submitted: dict[int, float] = {}
    waits: list[float] = []
    finished = asyncio.Event()

    def done(index: int, data: Any, result: Any) -> None:
        results[index] = result
        waits.append(loop.time() - submitted[index])
        if len(results) == len(submissions):
            finished.set()

    with ThreadPoolExecutor(2) as executor:
        verifier = PieceVerifier(store, executor, done)
        for index, data in submissions:
            submitted[index] = loop.time()
            verifier.submit(index, bytearray(data) if data is not None else None)
            if gap:
                await asyncio.sleep(gap)
        await asyncio.wait_for(finished.wait(), 10)
    return results, waits


def test_pieces_arriving_one_at_a_time_are_hashed_as_a_batch(tmp_path: Path) -> None:
    store, data = make(tmp_path)
    # Four pieces, one per millisecond: well inside the hold, so one trip hashes all four.
    results, _ = asyncio.run(submit_and_wait(store, [(i, data[i]) for i in range(BATCH)], gap=0.001))
    assert results == {i: True for i in range(BATCH)}
    assert store.batches == [BATCH]


def test_a_lone_piece_waits_for_the_hold_and_no_longer(tmp_path: Path) -> None:
    store, data = make(tmp_path)
    results, waits = asyncio.run(submit_and_wait(store, [(5, data[5])]))
    assert results == {5: True}
    assert store.batches == [1]
    assert HOLD_SECONDS * 0.9 <= waits[0] < 2.0  # went once the hold was over, not at the next submit


def test_a_full_batch_goes_at_once_and_the_rest_after_the_hold(tmp_path: Path, monkeypatch:
                                                               pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verifier_module, "HOLD_SECONDS", 5.0)  # only a full batch can go before 5 s
    store, data = make(tmp_path)
    loop_results: dict[int, Any] = {}

    async def scenario() -> list[int]:
        first = asyncio.Event()

        def done(index: int, piece: Any, result: Any) -> None:
            loop_results[index] = result
            if len(loop_results) == BATCH:
                first.set()

        with ThreadPoolExecutor(2) as executor:
            verifier = PieceVerifier(store, executor, done)
            for i in range(BATCH + 1):
                verifier.submit(i, bytearray(data[i]))
            await asyncio.wait_for(first.wait(), 2)  # the full batch, long before the hold
            await asyncio.sleep(0.05)
            early = sorted(loop_results)
            verifier.stop()
        return early

    early = asyncio.run(scenario())
    assert early == list(range(BATCH))
    assert store.batches == [BATCH]  # the fifth waited for the hold, and stop dropped it with its timer


def test_pieces_on_disk_and_in_memory_share_a_batch_and_bad_ones_fail(tmp_path: Path) -> None:
    store, data = make(tmp_path)
    store.write_block(2, 0, data[2])  # piece 2 was written as its blocks arrived
    corrupt = bytes(PL)
    results, _ = asyncio.run(submit_and_wait(store, [(0, data[0]), (1, corrupt), (2, None)], gap=0.001))
    assert results == {0: True, 1: False, 2: True}
    assert store.batches == [3]
    assert store.read_piece(0) == data[0] and store.read_piece(2) == data[2]
