"""Complete pieces hashed and written in worker threads, a few at a time.

A worker takes up to ``BATCH`` queued pieces per trip and hashes them side
by side (the multi-buffer SHA-1 kernel does four streams for little more
than the price of one: 3.9 GB/s per core against 1.7 for one stream), then
writes the good ones. A trip waits until a batch is queued or the oldest
piece has waited ``HOLD_SECONDS``: pieces that trickle in one at a time from
many slow peers are still hashed four at once, while a slow download adds
only that much latency. Results come back to the event loop in one callback
per trip, not one task per piece.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor

from torrent.core.errors import StorageError
from torrent.storage.files import Buffer, Storage
from torrent.storage.journal import PieceJournal

BATCH = 4  # the kernel's lane count
# At 250 MB/s a batch of 256 KiB pieces queues in 4 ms; what waits costs that much memory at most.
HOLD_SECONDS = 0.01

Done = Callable[[int, Buffer, "bool | StorageError"], None]


class PieceVerifier:
    """``submit`` on the loop; ``done(index, data, result)`` is called on the loop
    with True (verified and written), False (bad hash) or a StorageError.
    Pieces written are recorded in ``journal`` right after their write, in the
    worker (so a record never precedes its data)."""

    def __init__(self, storage: Storage, executor: Executor, done: Done, *, workers: int = 2,
                 journal: PieceJournal | None = None) -> None:
        self._storage = storage
        self._journal = journal
        self._stopped = False
        self._executor = executor
        self._done = done
        self._workers = workers
        self._pending: deque[tuple[int, Buffer | None]] = deque()  # appended on the loop, taken by workers
        self._running = 0  # jobs in the executor; changed only on the loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._hold: asyncio.TimerHandle | None = None  # armed while less than a batch waits
        self._due = False  # the oldest piece waited HOLD_SECONDS: the next trip goes, full or not

    def submit(self, index: int, data: Buffer | None) -> None:
        """Queue piece ``index``; ``data`` must not change until ``done``. None: the piece was written
        as its blocks arrived; a worker reads it into a buffer of its own (so pieces waiting here hold
        no memory), hashes it, and does not write it again."""
        if self._stopped:
            return
        self._loop = asyncio.get_running_loop()
        self._pending.append((index, data))
        self._start_job()

    def _held(self) -> None:
        self._hold = None
        self._due = True
        self._start_job()

    def _start_job(self) -> None:
        if not self._pending or self._running >= self._workers:
            return  # a trip under way comes back through _job_ended
        if len(self._pending) < BATCH and not self._due:
            if self._hold is None:
                assert self._loop is not None
                self._hold = self._loop.call_later(HOLD_SECONDS, self._held)
            return
        self._due = False
        self._cancel_hold()
        try:
            self._executor.submit(self._work)
        except RuntimeError:  # the executor is shut down: the session is closing
            self._pending.clear()
            return
        self._running += 1

    def _work(self) -> None:
        """In a worker thread: the trip it was started for, then more while whole batches wait."""
        loop = self._loop
        assert loop is not None
        pending = self._pending
        first = True
        try:
            while first or len(pending) >= BATCH:  # a part batch waits on the loop, for more or for the hold
                first = False
                batch = []
                try:
                    while len(batch) < BATCH:
                        batch.append(pending.popleft())
                except IndexError:
                    pass
                if not batch:
                    return
                on_disk = [position for position, (_, data) in enumerate(batch) if data is None]
                pieces = [(index, bytearray(self._storage.geometry.piece_size(index)) if data is None else data)
                          for index, data in batch]
                try:
                    results: list[bool | StorageError] = self._storage.verify_and_write_many(pieces,
                                                                                             on_disk=on_disk)
                except StorageError as exc:
                    results = [exc] * len(batch)
                if self._journal is not None:
                    written = [index for (index, _), result in zip(pieces, results) if result is True]
                    if written:
                        self._journal.append(written)
                loop.call_soon_threadsafe(self._deliver, pieces, results)
        except RuntimeError:
            return  # the loop is closed: nobody is left to tell
        finally:
            try:
                loop.call_soon_threadsafe(self._job_ended)
            except RuntimeError:
                pass

    def _deliver(self, pieces: list[tuple[int, Buffer]], results: list[bool | StorageError]) -> None:
        for (index, data), result in zip(pieces, results):
            self._done(index, data, result)

    def stop(self) -> None:
        """Queued pieces are dropped (the torrent is stopping); the trip under way finishes."""
        self._stopped = True
        self._pending.clear()
        self._cancel_hold()

    def _cancel_hold(self) -> None:
        if self._hold is not None:
            self._hold.cancel()
            self._hold = None

    def _job_ended(self) -> None:
        self._running -= 1
        # A piece queued after the worker found the queue empty, but before
        # this ran, would otherwise wait for the next submit.
        self._start_job()
