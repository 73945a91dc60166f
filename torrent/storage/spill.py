"""Blocks written to their place on disk as they arrive, for pieces that get no buffer in memory.

Many slow peers need more pieces requested at once than a leecher can hold whole in memory: a
rate-capped libtorrent seeder sends a burst per limiter tick (half a second of its rate), so each peer
needs that much requested, and sixteen of them need far more than the assembly budget. Pieces past the
budget have their blocks written here, in one worker and in arrival order; once a piece is complete
and its blocks are on disk, the verifier reads it back (from the page cache) and hashes it. Unverified
bytes on disk are harmless: a piece is ours only once it hashes, and a fresh copy overwrites a bad one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor

from torrent.core.errors import StorageError
from torrent.storage.files import Storage

TRIP_BLOCKS = 64  # blocks a worker trip writes before it reports back

Written = Callable[[int, list[int]], None]  # (bytes written, complete pieces now wholly on disk)
Failed = Callable[[StorageError], None]


class BlockSpill:
    """``write`` on the loop. ``written(nbytes, pieces)`` is called on the loop after
    each worker trip; ``failed(error)`` once, on the first write that fails (nothing more is written)."""

    def __init__(self, storage: Storage, executor: Executor, written: Written, failed: Failed) -> None:
        self._storage = storage
        self._executor = executor
        self._written = written
        self._failed = failed
        self._queue: deque[tuple[int, int, bytes]] = deque()  # appended on the loop, taken by the worker
        self._pending: dict[int, int] = {}  # piece → its blocks queued or being written
        self._sealed: set[int] = set()  # complete pieces with blocks still pending
        self.queued_bytes = 0
        self.written_bytes = 0  # in all, before verification
        self._running = False
        self._stopped = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def write(self, index: int, begin: int, data: bytes, *, last: bool = False) -> None:
        """Queue a block of piece ``index`` (a copy: the caller's buffer is reused). ``last``: the piece
        has all its blocks with this one, and is reported once they are all on disk."""
        if self._stopped:
            return
        self._queue.append((index, begin, data))
        self._pending[index] = self._pending.get(index, 0) + 1
        if last:
            self._sealed.add(index)
        self.queued_bytes += len(data)
        if not self._running:
            self._start()

    def stop(self) -> None:
        """Queued blocks are dropped (the torrent is stopping); the trip under way finishes."""
        self._stopped = True
        self._queue.clear()

    def _start(self) -> None:
        self._loop = self._loop or asyncio.get_running_loop()
        try:
            self._executor.submit(self._work)
        except RuntimeError:  # the executor is shut down: the session is closing
            self._queue.clear()
            return
        self._running = True

    def _work(self) -> None:
        """In a worker thread: one trip of up to TRIP_BLOCKS blocks."""
        loop = self._loop
        assert loop is not None
        queue, write = self._queue, self._storage.write_block
        done: list[int] = []
        nbytes = 0
        error: StorageError | None = None
        try:
            while len(done) < TRIP_BLOCKS:
                index, begin, data = queue.popleft()
                try:
                    write(index, begin, data)
                except StorageError as exc:
                    error = exc
                    break
                done.append(index)
                nbytes += len(data)
        except IndexError:
            pass
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is left to tell
            loop.call_soon_threadsafe(self._trip_ended, nbytes, done, error)

    def _trip_ended(self, nbytes: int, done: list[int], error: StorageError | None) -> None:
        self._running = False
        pending = self._pending
        complete = []
        for index in done:
            left = pending[index] - 1
            if left:
                pending[index] = left
            else:
                del pending[index]
                if index in self._sealed:
                    self._sealed.discard(index)
                    complete.append(index)
        if error is not None:
            self._stopped = True
            self._queue.clear()
            self._failed(error)
            return
        self._report(nbytes, complete)
        if self._queue and not self._stopped:
            self._start()

    def _report(self, nbytes: int, complete: list[int]) -> None:
        self.queued_bytes -= nbytes
        self.written_bytes += nbytes
        if not self._stopped:
            self._written(nbytes, complete)
