"""The event stream: each subscriber has its own bounded queue.

Publishing never waits and never grows memory without bound: a subscriber
that falls behind loses its own oldest events (and is told how many through
``dropped``), so one slow front end cannot stall the engine or the others.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from torrent.session.api import Event

DEFAULT_QUEUE = 1000


class Subscription:
    """An async iterator of events; ``close()`` ends it."""

    def __init__(self, bus: EventBus, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError("a subscription holds at least one event")
        self._bus = bus
        self._queue: deque[Event] = deque(maxlen=maxlen)
        self._ready = asyncio.Event()
        self._closed = False
        self.dropped = 0  # events lost because this subscriber fell behind

    def _put(self, event: Event) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
            self._bus.dropped += 1
        self._queue.append(event)
        self._ready.set()

    def pending(self) -> int:
        return len(self._queue)

    def get_nowait(self) -> Event | None:
        """The oldest waiting event, or None."""
        if self._queue:
            return self._queue.popleft()
        self._ready.clear()
        return None

    async def get(self) -> Event:
        """The next event; raises ``StopAsyncIteration`` once closed and drained."""
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    def close(self) -> None:
        self._closed = True
        self._ready.set()
        self._bus._subscribers.discard(self)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        return await self.get()


class EventBus:
    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()
        self.dropped = 0  # over every subscriber

    def subscribe(self, maxlen: int = DEFAULT_QUEUE) -> Subscription:
        sub = Subscription(self, maxlen)
        self._subscribers.add(sub)
        return sub

    def publish(self, event: Event) -> None:
        for sub in self._subscribers:
            sub._put(event)

    def close(self) -> None:
        for sub in list(self._subscribers):
            sub.close()
