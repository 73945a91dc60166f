"""torrent.engine.uploads: whole pieces for peers that take them, exact blocks for peers that would
make whole pieces wasteful, a bound on the piece reads holding buffers, and cancelled reads not started."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import pytest

from torrent.engine.uploads import READ_AHEAD, ReadAccount, Request, UploadReads

BLOCK = 16384
PIECE = 256 * 1024
PIECES = 64
PAYLOAD = random.Random(3).randbytes(PIECE * PIECES)


class Disk:
    """The payload in memory, counting what is read and how many piece reads run at once."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.bytes_read = 0
        self.pieces = 0
        self.blocks = 0
        self.running = 0
        self.most_running = 0
        self._lock = threading.Lock()

    def read_piece(self, index: int) -> bytearray:
        with self._lock:
            self.pieces += 1
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        time.sleep(self.delay)
        with self._lock:
            self.running -= 1
            self.bytes_read += PIECE
        return bytearray(PAYLOAD[index * PIECE:(index + 1) * PIECE])

    def read_piece_cached(self, index: int) -> bytearray | None:
        return None  # as if nothing were in the page cache: every piece read goes to a worker

    def read_block(self, index: int, begin: int, length: int) -> bytes:
        with self._lock:
            self.blocks += 1
            self.bytes_read += length
        start = index * PIECE + begin
        return PAYLOAD[start:start + length]


def reads_for(disk: Disk, executor: ThreadPoolExecutor, **kw: int) -> UploadReads:
    return UploadReads(disk, lambda i: PIECE, PIECE, executor,
                       cache_bytes=kw.pop("cache_bytes", 8 * PIECE), **kw)


async def serve(reads: UploadReads, account: ReadAccount, requests: list[Request]) -> list[bytes]:
    """What the swarm's serving loop does with a peer's queue: read ahead, then send the head."""
    queue: deque[Request] = deque()
    for request in requests:
        account.ask(request)
        queue.append(request)
    out = []
    while queue:
        reads.read_ahead(account, queue)
        future, offset = reads.source(account, queue[0])
        buffer = await asyncio.shield(future)
        request = queue.popleft()
        out.append(bytes(memoryview(buffer)[offset:offset + request[2]]))
        reads.sent(account, request)
    return out


def expected(requests: list[Request]) -> list[bytes]:
    return [PAYLOAD[i * PIECE + b:i * PIECE + b + n] for i, b, n in requests]


@pytest.fixture
def executor() -> ThreadPoolExecutor:
    with ThreadPoolExecutor(2) as pool:
        yield pool


def test_a_peer_taking_whole_pieces_gets_one_read_per_piece(executor: ThreadPoolExecutor) -> None:
    disk = Disk()
    reads = reads_for(disk, executor)
    requests = [(i, b, BLOCK) for i in range(PIECES) for b in range(0, PIECE, BLOCK)]
    got = asyncio.run(serve(reads, ReadAccount(), requests))
    assert got == expected(requests)
    assert disk.pieces == PIECES and disk.blocks == 0


@pytest.mark.parametrize("read_on_loop", [True, False])
def test_pieces_in_the_page_cache_are_read_on_the_loop_by_a_seed(executor: ThreadPoolExecutor,
                                                                  read_on_loop: bool) -> None:
    """Every other piece is cached: a seed reads those at once, the rest in a worker, all in order; a
    leecher reads every piece in a worker (bounded in flight, so its uploads pin little memory)."""

    class HalfCached(Disk):
        def __init__(self) -> None:
            super().__init__()
            self.loop_reads: list[int] = []

        def read_piece_cached(self, index: int) -> bytearray | None:
            if index % 2:
                return None
            self.loop_reads.append(index)
            assert threading.current_thread() is threading.main_thread()  # the loop's thread, not a worker
            return bytearray(PAYLOAD[index * PIECE:(index + 1) * PIECE])

    disk = HalfCached()
    reads = reads_for(disk, executor)
    reads.resize(8 * PIECE, read_on_loop=read_on_loop)
    requests = [(i, b, BLOCK) for i in range(PIECES) for b in range(0, PIECE, BLOCK)]
    got = asyncio.run(serve(reads, ReadAccount(), requests))
    assert got == expected(requests)
    if read_on_loop:
        assert disk.loop_reads == list(range(0, PIECES, 2))
        assert disk.pieces == PIECES // 2  # the workers read only the pieces not cached
    else:
        assert disk.loop_reads == [] and disk.pieces == PIECES


def test_a_peer_asking_one_block_per_piece_gets_exact_blocks(executor: ThreadPoolExecutor) -> None:
    """Whole-piece reads would read 16 times what it asked for; the disk reads no more than twice."""
    disk = Disk()
    reads = reads_for(disk, executor)
    rng = random.Random(5)
    requests = [(i, rng.randrange(PIECE // BLOCK) * BLOCK, BLOCK) for _ in range(3) for i in range(PIECES)]
    got = asyncio.run(serve(reads, ReadAccount(), requests))
    assert got == expected(requests)
    asked = len(requests) * BLOCK
    assert disk.bytes_read <= 2 * asked, f"read {disk.bytes_read} B for {asked} B asked"


def test_half_pieces_still_come_whole(executor: ThreadPoolExecutor) -> None:
    """A peer that takes half of each piece (others send it the rest) costs twice what it asked, no more."""
    disk = Disk()
    reads = reads_for(disk, executor)
    requests = [(i, b, BLOCK) for i in range(PIECES) for b in range(0, PIECE // 2, BLOCK)]
    got = asyncio.run(serve(reads, ReadAccount(), requests))
    assert got == expected(requests)
    assert disk.bytes_read <= 2 * len(requests) * BLOCK
    assert disk.pieces >= PIECES - 2  # whole pieces once its first requests are in


def test_piece_reads_in_flight_are_bounded_across_peers(executor: ThreadPoolExecutor) -> None:
    disk = Disk(delay=0.005)
    with ThreadPoolExecutor(16) as wide:  # a pool wider than the bound: the bound is ours, not the pool's
        reads = reads_for(disk, wide, max_in_flight=3, cache_bytes=64 * PIECE)

        async def main() -> list[list[bytes]]:
            peers = [[(p * 4 + k, b, BLOCK) for k in range(4) for b in range(0, PIECE, BLOCK)] for p in range(16)]
            return await asyncio.gather(*(serve(reads, ReadAccount(), r) for r in peers)), peers

        results, peers = asyncio.run(main())
    assert results == [expected(r) for r in peers]
    assert disk.most_running <= 3
    assert disk.pieces == 64  # each piece read once, shared by the queue


def test_read_ahead_is_bounded_per_peer(executor: ThreadPoolExecutor) -> None:
    disk = Disk()
    reads = reads_for(disk, executor)
    account = ReadAccount()
    queue: deque[Request] = deque((i, b, BLOCK) for i in range(PIECES) for b in range(0, PIECE, BLOCK))
    for request in queue:
        account.ask(request)

    async def main() -> None:
        reads.read_ahead(account, queue)
        reads.read_ahead(account, queue)
        await asyncio.sleep(0.05)

    asyncio.run(main())
    assert disk.pieces == READ_AHEAD and disk.blocks == 0


def test_a_cancelled_block_read_never_starts_and_stops_counting() -> None:
    disk = Disk()
    gate = threading.Event()
    with ThreadPoolExecutor(1) as one:
        reads = reads_for(disk, one)
        account = ReadAccount()

        async def main() -> None:
            blocker = asyncio.get_running_loop().run_in_executor(one, gate.wait)  # the only thread is busy
            queue: deque[Request] = deque([(3, 0, BLOCK), (9, BLOCK, BLOCK)])
            for request in queue:
                account.ask(request)
            reads.read_ahead(account, queue)
            assert len(account.blocks) == 2  # 32 KiB asked: a whole piece would be 8 times that
            for request in list(queue):
                account.forget(request)
            await asyncio.sleep(0)  # the cancellation reaches the executor's queue on the loop's next turn
            gate.set()
            await blocker
            await asyncio.sleep(0.05)

        asyncio.run(main())
    assert disk.blocks == 0 and disk.pieces == 0
    assert account.requested == 0 and not account.blocks


def test_a_failed_piece_read_is_not_cached(executor: ThreadPoolExecutor) -> None:
    calls = []

    class Failing(Disk):
        def read_piece(self, index: int) -> bytearray:
            calls.append(index)
            raise OSError("gone")

    reads = UploadReads(Failing(), lambda i: PIECE, PIECE, executor, cache_bytes=8 * PIECE)
    account = ReadAccount()
    request = (0, 0, PIECE)  # whole pieces asked: whole reads

    async def main() -> None:
        for _ in range(2):
            account.ask(request)
        for _ in range(2):
            future, _ = reads.source(account, request)
            with pytest.raises(OSError):
                await future

    asyncio.run(main())
    assert calls == [0, 0]
