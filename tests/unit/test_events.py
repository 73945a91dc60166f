"""The event bus: one bounded queue per subscriber; a slow one loses only its own oldest events."""

from __future__ import annotations

import asyncio

import pytest

from torrent.session.api import Event, StateChanged, TorrentAdded
from torrent.session.events import DEFAULT_QUEUE, EventBus, Subscription


def ev(n: int) -> TorrentAdded:
    return TorrentAdded(f"{n:040x}", float(n), f"torrent {n}")


def drain(sub: Subscription) -> list[Event]:
    out = []
    while (event := sub.get_nowait()) is not None:
        out.append(event)
    return out


def test_get_nowait_gives_events_in_order_then_none() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    assert sub.get_nowait() is None
    events = [ev(n) for n in range(5)]
    for e in events:
        bus.publish(e)
    assert sub.pending() == 5
    assert drain(sub) == events
    assert sub.pending() == 0 and sub.get_nowait() is None


def test_subscribers_are_independent() -> None:
    bus = EventBus()
    first = bus.subscribe()
    bus.publish(ev(0))  # before the second subscribed: only the first sees it
    second = bus.subscribe()
    bus.publish(ev(1))
    bus.publish(ev(2))
    assert drain(first) == [ev(0), ev(1), ev(2)]
    assert drain(second) == [ev(1), ev(2)]  # the first reading did not consume the second's


def test_a_slow_subscriber_loses_only_its_own_oldest_events() -> None:
    bus = EventBus()
    slow = bus.subscribe(maxlen=3)
    fast = bus.subscribe(maxlen=3)
    other_slow = bus.subscribe(maxlen=2)
    seen_fast = []
    for n in range(10):
        bus.publish(ev(n))
        seen_fast.extend(drain(fast))
    assert seen_fast == [ev(n) for n in range(10)] and fast.dropped == 0
    assert drain(slow) == [ev(7), ev(8), ev(9)]
    assert slow.dropped == 7
    assert drain(other_slow) == [ev(8), ev(9)]
    assert other_slow.dropped == 8
    assert bus.dropped == 15  # over every subscriber


def test_nothing_is_dropped_up_to_maxlen() -> None:
    bus = EventBus()
    sub = bus.subscribe(maxlen=4)
    for n in range(4):
        bus.publish(ev(n))
    assert sub.dropped == 0 and bus.dropped == 0
    bus.publish(ev(4))
    assert sub.dropped == 1 and bus.dropped == 1
    assert drain(sub) == [ev(n) for n in range(1, 5)]


def test_default_queue_size() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    for n in range(DEFAULT_QUEUE + 1):
        bus.publish(ev(n))
    assert sub.pending() == DEFAULT_QUEUE and sub.dropped == 1


@pytest.mark.parametrize("maxlen", [0, -1])
def test_a_subscription_holds_at_least_one_event(maxlen: int) -> None:
    with pytest.raises(ValueError):
        EventBus().subscribe(maxlen=maxlen)


def test_closed_subscription_receives_nothing_more() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    other = bus.subscribe(maxlen=1)
    sub.close()
    bus.publish(ev(0))
    bus.publish(ev(1))
    assert sub.get_nowait() is None
    assert sub.dropped == 0
    assert other.dropped == 1 and bus.dropped == 1


@pytest.mark.asyncio
async def test_async_iteration_preserves_order_and_ends_after_draining_on_close() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    events = [ev(0), StateChanged(None, 1.0, "queued", "downloading"), ev(2)]
    for e in events:
        bus.publish(e)
    sub.close()  # closed with events still queued: they are delivered first
    bus.publish(ev(3))  # after close: not delivered
    assert [e async for e in sub] == events


@pytest.mark.asyncio
async def test_bus_close_ends_every_subscription_after_draining() -> None:
    bus = EventBus()
    a, b = bus.subscribe(), bus.subscribe()
    bus.publish(ev(0))
    bus.close()
    assert [e async for e in a] == [ev(0)]
    assert [e async for e in b] == [ev(0)]
    with pytest.raises(StopAsyncIteration):
        await a.get()


@pytest.mark.asyncio
async def test_a_waiting_reader_wakes_on_publish_and_on_close() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    received: list[Event] = []

    async def read() -> None:
        async for event in sub:
            received.append(event)

    task = asyncio.create_task(read())
    await asyncio.sleep(0)  # let the reader block on the empty queue (a yield, not a wait)
    assert not task.done() and received == []
    bus.publish(ev(0))
    bus.publish(ev(1))
    for _ in range(3):
        await asyncio.sleep(0)
    assert received == [ev(0), ev(1)] and not task.done()
    sub.close()
    await task  # ends instead of waiting forever
    assert received == [ev(0), ev(1)]


@pytest.mark.asyncio
async def test_get_nowait_on_empty_does_not_break_a_later_get() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    assert sub.get_nowait() is None
    task = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    bus.publish(ev(7))
    assert await task == ev(7)
