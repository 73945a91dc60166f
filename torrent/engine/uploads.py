"""Disk reads for uploading, bounded whatever peers ask.

Whole pieces are read once and shared by every peer through a small cache:
one read per piece instead of per block, which is what makes seeding fast.
With ``read_on_loop`` (a seed), a piece in the page cache is read at once, on
the loop: the hop to a worker thread and back waited for the scheduler twice.
Any other read goes to a worker.

But a peer that asks for one block of each piece would have us read
the torrent many times over for a trickle of requests, so each peer keeps an
account of the bytes read for it, the bytes it asked for and did not cancel,
and the bytes it was sent. A whole piece is read for it only while the reads,
with an exact read reserved for everything it is still waiting for, stay
within twice what it asked for; otherwise it gets exactly the blocks it
asked for.
However many peers ask, at most ``max_in_flight`` piece reads in workers hold
a buffer at once; the rest wait their turn without one. (A read on the loop
never waits, so it holds nothing while waiting.)
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Protocol

READ_AHEAD = 2  # pieces per peer read before their turn to be sent
READ_AHEAD_BLOCKS = 8  # blocks per peer read ahead when it gets exact blocks
READ_AHEAD_SCAN = 64  # queued requests looked at to find them
MAX_IN_FLIGHT = 4  # piece reads holding a buffer at once, per torrent

Request = tuple[int, int, int]  # index, begin, length


class PieceSource(Protocol):
    """What the reads come from (the torrent's storage): ``read_piece_cached`` on the loop, the others
    in the executor's threads."""

    def read_piece(self, index: int) -> bytearray: ...
    def read_piece_cached(self, index: int) -> bytearray | None: ...  # on the loop: None if it would wait
    def read_block(self, index: int, begin: int, length: int) -> bytes: ...


@dataclass(slots=True)
class ReadAccount:
    """One peer's side of the bargain: what the disk read for it and what it asked for."""

    read: int = 0
    requested: int = 0  # bytes asked for and not cancelled
    sent: int = 0
    blocks: dict[Request, asyncio.Future[bytes]] = field(default_factory=dict)  # exact reads in flight

    def ask(self, request: Request) -> None:
        self.requested += request[2]

    def forget(self, request: Request) -> None:
        """A cancelled request no longer counts, and its block read, if not yet started, never starts."""
        self.requested -= request[2]
        future = self.blocks.pop(request, None)
        if future is not None:
            future.cancel()

    def close(self) -> None:
        for future in self.blocks.values():
            future.cancel()
        self.blocks.clear()


class UploadReads:
    """The reads of one torrent's uploads."""

    def __init__(self, source: PieceSource, piece_size: Callable[[int], int], piece_length: int,
                 executor: Executor, *, cache_bytes: int, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self._source = source
        self._piece_size = piece_size
        self._piece_length = piece_length
        self._executor = executor
        self._cache: OrderedDict[int, asyncio.Future[bytearray]] = OrderedDict()
        self.cache_max = max(2, cache_bytes // piece_length)
        self._max_in_flight = max(1, max_in_flight)
        self._in_flight = 0
        self._waiting: deque[tuple[int, asyncio.Future[bytearray]]] = deque()
        self.read_on_loop = False  # set by resize: a seed's reads of cached pieces are done on the loop

    def resize(self, cache_bytes: int, *, read_on_loop: bool) -> None:
        self.cache_max = max(2, cache_bytes // self._piece_length)
        self.read_on_loop = read_on_loop
        self._trim()

    def drop(self, index: int) -> None:
        """Forget a cached piece (its data on disk is no longer trusted)."""
        self._cache.pop(index, None)

    # ---- what the serving loop asks -------------------------------------------------------------

    def read_ahead(self, account: ReadAccount, queue: deque[Request]) -> None:
        """Start the reads of what is at the head of a peer's queue: the disk works while the blocks
        before them go out. A peer's reads in flight are bounded by this, not by its requests."""
        pieces: list[int] = []
        blocks = 0
        for scanned, request in enumerate(queue):
            index = request[0]
            if index in self._cache:
                if index not in pieces:
                    pieces.append(index)
            elif self._whole_piece_affordable(account, index):  # pieces has room: the loop stops when full
                pieces.append(index)
                self._start_piece(account, index)
            elif request not in account.blocks:
                if blocks == READ_AHEAD_BLOCKS:
                    break
                blocks += 1
                self._start_block(account, request)
            if len(pieces) >= READ_AHEAD or scanned >= READ_AHEAD_SCAN:
                break

    def source(self, account: ReadAccount, request: Request) -> tuple[asyncio.Future, int]:
        """Where a request's bytes come from: a future buffer, and the block's offset in it."""
        index, begin, _ = request
        future = self._cache.get(index)
        if future is not None:
            self._cache.move_to_end(index)
            return future, begin
        block = account.blocks.get(request)
        if block is not None:
            return block, 0
        if self._whole_piece_affordable(account, index):
            return self._start_piece(account, index), begin
        return self._start_block(account, request), 0

    def sent(self, account: ReadAccount, request: Request) -> None:
        account.sent += request[2]
        account.blocks.pop(request, None)

    # ---- reads ----------------------------------------------------------------------------------

    def _whole_piece_affordable(self, account: ReadAccount, index: int) -> bool:
        """A whole piece if, with an exact read of everything the peer still waits for (asked less sent),
        the disk reads at most twice what it asked for. An honest peer gets whole pieces once a piece's
        worth is asked for; one asking a block here and there gets exact blocks for good."""
        return account.read + self._piece_size(index) <= account.requested + account.sent

    def _start_piece(self, account: ReadAccount, index: int) -> asyncio.Future[bytearray]:
        account.read += self._piece_size(index)
        loop = asyncio.get_running_loop()
        cached = self._source.read_piece_cached(index) if self.read_on_loop else None
        if cached is not None:
            future: asyncio.Future[bytearray] = loop.create_future()
            future.set_result(cached)
        elif self._in_flight < self._max_in_flight:
            future = self._submit(loop, index)
        else:
            future = loop.create_future()
            self._waiting.append((index, future))
        self._cache[index] = future
        future.add_done_callback(lambda f: (f.cancelled() or f.exception()) and self._evict_failed(index, f))
        self._trim()
        return future

    def _submit(self, loop: asyncio.AbstractEventLoop, index: int) -> asyncio.Future[bytearray]:
        self._in_flight += 1
        future = loop.run_in_executor(self._executor, self._source.read_piece, index)
        future.add_done_callback(self._piece_done)
        return future

    def _piece_done(self, _: asyncio.Future[bytearray]) -> None:
        self._in_flight -= 1
        while self._waiting and self._in_flight < self._max_in_flight:
            index, waiter = self._waiting.popleft()
            if waiter.done():
                continue
            read = self._submit(asyncio.get_running_loop(), index)
            read.add_done_callback(lambda f, w=waiter: _copy(f, w))

    def _start_block(self, account: ReadAccount, request: Request) -> asyncio.Future[bytes]:
        account.read += request[2]
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._source.read_block, *request)
        account.blocks[request] = future
        return future

    def _trim(self) -> None:
        while len(self._cache) > self.cache_max:
            self._cache.popitem(last=False)

    def _evict_failed(self, index: int, future: asyncio.Future[bytearray]) -> None:
        if self._cache.get(index) is future:
            del self._cache[index]


def _copy(source: asyncio.Future[bytearray], target: asyncio.Future[bytearray]) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif (exc := source.exception()) is not None:
        target.set_exception(exc)
    else:
        target.set_result(source.result())

