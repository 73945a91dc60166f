"""Tracker client over real sockets on 127.0.0.1: the real opentracker, and small
in-test servers that misbehave on purpose. Every scenario runs on asyncio and uvloop.

Nothing here touches an address outside 127.0.0.0/8.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import gzip
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import uvloop
from swarmkit import FakeTracker, local_settings, make_torrent, start_session, wait_for

from torrent import __version__
from torrent.codec.bencoding import encode
from torrent.codec.tracker.announce import (
    AnnounceRequest,
    Event,
    TrackerError,
    TrackerFailure,
    TrackerHTTPError,
    TrackerResponseError,
    TrackerTimeout,
    TrackerUnreachable,
)
from torrent.session.udp import UdpEndpoint
from torrent.tracker.client import announce, scrape

T = TypeVar("T")
Run = Callable[[Coroutine[Any, Any, T]], T]

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}
SCENARIO_DEADLINE = 20.0  # no single scenario may hang the suite


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Run[Any]:
    """``run(coro)``: the scenario on the default asyncio loop, and again on uvloop."""
    factory = LOOPS[request.param]

    def runner(coro: Coroutine[Any, Any, T]) -> T:
        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(asyncio.wait_for(coro, SCENARIO_DEADLINE))

    return runner


def req(info_hash: bytes, peer_id: bytes, port: int, *, left: int = 100, event: Event = Event.NONE) -> AnnounceRequest:
    return AnnounceRequest(info_hash=info_hash, peer_id=peer_id.ljust(20, b"-"), port=port, uploaded=0,
                           downloaded=0, left=left, event=event, numwant=50, key=port)


def closed_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- against opentracker -----------------------------------------------------------

async def swarm_scenario(url: str, info_hash: bytes, **kw: Any) -> None:
    a = await announce(url, req(info_hash, b"-AA0001-", 40001, event=Event.STARTED), timeout=5, **kw)
    assert a.interval > 0
    b = await announce(url, req(info_hash, b"-BB0001-", 40002, left=0, event=Event.STARTED), timeout=5, **kw)
    assert ("127.0.0.1", 40001) in b.peers
    a2 = await announce(url, req(info_hash, b"-AA0001-", 40001), timeout=5, **kw)
    assert ("127.0.0.1", 40002) in a2.peers
    assert (a2.complete, a2.incomplete) == (1, 1)

    stats = (await scrape(url, [info_hash], timeout=5, **kw)).files[info_hash]
    assert (stats.complete, stats.incomplete) == (1, 1)

    await announce(url, req(info_hash, b"-BB0001-", 40002, left=0, event=Event.STOPPED), timeout=5, **kw)
    a3 = await announce(url, req(info_hash, b"-AA0001-", 40001), timeout=5, **kw)
    assert ("127.0.0.1", 40002) not in a3.peers
    assert (a3.complete, a3.incomplete) == (0, 1)
    stats = (await scrape(url, [info_hash], timeout=5, **kw)).files[info_hash]
    assert (stats.complete, stats.incomplete) == (0, 1)


def test_http_swarm_with_opentracker(run: Run[Any], opentracker: Any) -> None:
    run(swarm_scenario(opentracker.http_url, opentracker.info_hash()))


def test_udp_swarm_with_opentracker(run: Run[Any], opentracker: Any) -> None:
    run(swarm_scenario(opentracker.udp_url, opentracker.info_hash()))


def test_udp_without_path_with_opentracker(run: Run[Any], opentracker: Any) -> None:
    run(swarm_scenario(f"udp://127.0.0.1:{opentracker.port}", opentracker.info_hash()))


def test_udp_through_the_sessions_shared_endpoint(run: Run[Any], opentracker: Any) -> None:
    """The session asks UDP trackers from the socket its DHT uses: replies reach the tracker client by
    transaction id, KRPC reaches the DHT side, anything else is dropped."""
    async def main() -> None:
        krpc: list[bytes] = []
        endpoint = await UdpEndpoint.open("127.0.0.1", 0, lambda data, addr: krpc.append(data))
        try:
            await swarm_scenario(opentracker.udp_url, opentracker.info_hash(),
                                 udp_socket_factory=endpoint.tracker_socket)
            assert endpoint.routes == {}  # every transaction's view closed with it
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                ping = b"d1:ad2:id20:" + b"n" * 20 + b"e1:q4:ping1:t2:aa1:y1:qe"
                other.sendto(ping, ("127.0.0.1", endpoint.port))
                other.sendto(struct.pack(">II", 1, 0xDEAD) + b"x" * 12, ("127.0.0.1", endpoint.port))
                for _ in range(100):
                    if krpc and endpoint.dropped:
                        break
                    await asyncio.sleep(0.01)
            assert krpc == [ping] and endpoint.dropped == 1
        finally:
            endpoint.close()

    run(main())


def test_http_and_udp_peers_meet(run: Run[Any], opentracker: Any) -> None:
    info_hash = opentracker.info_hash()

    async def scenario() -> None:
        await announce(opentracker.http_url, req(info_hash, b"-HT0001-", 41001), timeout=5)
        r = await announce(opentracker.udp_url, req(info_hash, b"-UD0001-", 41002), timeout=5)
        assert ("127.0.0.1", 41001) in r.peers

    run(scenario())


class SharedEndpoint:
    """A stand-in for the session's shared UDP socket: not connected, one queue."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []
        self.closed = False

    async def open(self, family: int, addr: Any) -> SharedEndpoint:
        loop = asyncio.get_running_loop()
        self.received: asyncio.Queue[Any] = asyncio.Queue()
        queue = self.received

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, src: Any) -> None:
                queue.put_nowait((data, src))

        self.transport, _ = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0), family=family)
        return self

    def send(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))
        self.transport.sendto(data, addr)

    def close(self) -> None:
        self.closed = True
        self.transport.close()


def test_udp_over_a_caller_supplied_socket(run: Run[Any], opentracker: Any) -> None:
    shared = SharedEndpoint()
    run(swarm_scenario(opentracker.udp_url, opentracker.info_hash(), udp_socket_factory=shared.open))
    assert shared.closed and all(addr[:2] == ("127.0.0.1", opentracker.port) for _, addr in shared.sent)


def test_not_whitelisted(run: Run[Any], opentracker: Any) -> None:
    stranger = b"\x5a" * 20

    async def scenario() -> None:
        with pytest.raises(TrackerFailure) as info:
            await announce(opentracker.http_url, req(stranger, b"-ZZ0001-", 1), timeout=5)
        assert "not authorized" in info.value.failure_reason
        assert str(info.value).startswith(f"tracker {opentracker.http_url}: tracker refused the request:")
        # opentracker's UDP side answers an unlisted hash with a bare 8-byte announce header.
        with pytest.raises(TrackerResponseError, match="announce response is 8 bytes"):
            await announce(opentracker.udp_url, req(stranger, b"-ZZ0001-", 1), timeout=5)

    run(scenario())


# ---- misbehaving HTTP trackers --------------------------------------------------------

Handler = Callable[[bytes], bytes | None]


@asynccontextmanager
async def http_tracker(handler: Handler) -> AsyncIterator[tuple[str, list[bytes]]]:
    """An HTTP server on 127.0.0.1 answering each request head with ``handler(head)``
    (None: never answer). Yields its announce URL and the request heads it saw."""
    heads: list[bytes] = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            heads.append(head)
            reply = handler(head)
            if reply is None:
                await reader.read()  # hold the connection until the client gives up
            else:
                writer.write(reply)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/announce", heads
    finally:
        server.close()


def reply(body: bytes, status: str = "200 OK", headers: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body


OK_BODY = encode({b"interval": 900, b"peers": bytes([127, 0, 0, 7, 0x1F, 0x90])})
HASH = bytes(range(20))


def test_http_never_answers(run: Run) -> None:
    async def scenario() -> None:
        async with http_tracker(lambda head: None) as (url, _):
            started = time.monotonic()
            with pytest.raises(TrackerTimeout) as info:
                await announce(url, req(HASH, b"x", 1), timeout=0.5)
            assert 0.45 < time.monotonic() - started < 3
            assert str(info.value) == f"tracker {url}: no answer within 0.5 s"

    run(scenario())


@pytest.mark.parametrize(("answer", "match"), [
    (reply(b"<html>oops</html>"), r"not bencoded"),
    (reply(b"i42e"), r"not a dictionary"),
    (b"SSH-2.0-OpenSSH_9.2\r\n", r"not an HTTP response"),
    (b"", r"connection closed before sending a response"),
    (reply(b"x" * 100)[:-50], r"after 50 of 100 body bytes"),
])
def test_http_garbage(run: Run[Any], answer: bytes, match: str) -> None:
    async def scenario() -> None:
        async with http_tracker(lambda head: answer) as (url, _):
            with pytest.raises(TrackerResponseError, match=match) as info:
                await announce(url, req(HASH, b"x", 1), timeout=5)
            assert str(info.value).startswith(f"tracker {url}: ") and "\n" not in str(info.value)

    run(scenario())


def test_http_failure_reason(run: Run) -> None:
    async def scenario() -> None:
        body = encode({b"failure reason": b"unregistered torrent"})
        async with http_tracker(lambda head: reply(body)) as (url, _):
            with pytest.raises(TrackerFailure) as info:
                await announce(url, req(HASH, b"x", 1), timeout=5)
        assert info.value.failure_reason == "unregistered torrent" and info.value.url == url
        # Some trackers send the failure with a 4xx status: the reason still shows.
        async with http_tracker(lambda head: reply(body, "403 Forbidden")) as (url, _):
            with pytest.raises(TrackerFailure, match="unregistered torrent"):
                await announce(url, req(HASH, b"x", 1), timeout=5)

    run(scenario())


@pytest.mark.parametrize(("status", "body"), [("500 Internal Server Error", b"boom"), ("404 Not Found", b""),
                                              ("300 Multiple Choices", b"")])
def test_http_error_status(run: Run[Any], status: str, body: bytes) -> None:
    async def scenario() -> None:
        async with http_tracker(lambda head: reply(body, status)) as (url, _):
            with pytest.raises(TrackerHTTPError) as info:
                await announce(url, req(HASH, b"x", 1), timeout=5)
        assert info.value.status == int(status[:3])
        assert str(info.value) == f"tracker {url}: HTTP {status}"

    run(scenario())


def test_http_redirect_to_opentracker(run: Run[Any], opentracker: Any) -> None:
    info_hash = opentracker.info_hash()

    def redirect(head: bytes) -> bytes:
        target = head.split(b" ")[1].decode()  # /announce?info_hash=…
        return reply(b"", "302 Found", f"Location: http://127.0.0.1:{opentracker.port}{target}\r\n")

    async def scenario() -> None:
        async with http_tracker(redirect) as (url, heads):
            r = await announce(url, req(info_hash, b"-RD0001-", 42001, event=Event.STARTED), timeout=5)
            assert ("127.0.0.1", 42001) in r.peers
            assert len(heads) == 1
            s = await scrape(url, [info_hash], timeout=5)  # /scrape redirected the same way
            assert s.files[info_hash].incomplete == 1

    run(scenario())


def test_http_relative_redirect_and_loop(run: Run) -> None:
    def handler(head: bytes) -> bytes:
        if head.startswith(b"GET /announce"):
            return reply(b"", "307 Temporary Redirect", "Location: /real?x=1\r\n")
        if head.startswith(b"GET /real?x=1"):
            return reply(OK_BODY)
        return reply(b"", "301 Moved", "Location: /loop\r\n")

    async def scenario() -> None:
        async with http_tracker(handler) as (url, heads):
            r = await announce(url, req(HASH, b"x", 1), timeout=5)
            assert r.peers == (("127.0.0.7", 8080),)
            base = url.rsplit("/", 1)[0]
            with pytest.raises(TrackerResponseError, match="more than 3 redirects"):
                await announce(base + "/elsewhere", req(HASH, b"x", 1), timeout=5)
            assert sum(h.startswith(b"GET /loop") for h in heads) == 3
        async with http_tracker(lambda head: reply(b"", "302 Found")) as (url, _):
            with pytest.raises(TrackerHTTPError, match="redirect without a Location"):
                await announce(url, req(HASH, b"x", 1), timeout=5)

    run(scenario())


def test_http_chunked_gzip_and_request_headers(run: Run) -> None:
    compressed = gzip.compress(OK_BODY)
    chunks = b"".join(f"{len(compressed[i:i + 7]):x}\r\n".encode() + compressed[i:i + 7] + b"\r\n"
                      for i in range(0, len(compressed), 7)) + b"0\r\n\r\n"
    answer = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n"
              b"Content-Type: text/plain\r\n\r\n" + chunks)

    async def scenario() -> None:
        async with http_tracker(lambda head: answer) as (url, heads):
            r = await announce(url + "?passkey=s3cr%2Ft", req(HASH, b"x", 1, event=Event.STARTED), timeout=5)
            assert r.interval == 900 and r.peers == (("127.0.0.7", 8080),)
        head = heads[0].decode()
        lines = head.split("\r\n")
        assert lines[0].startswith("GET /announce?passkey=s3cr%2Ft&info_hash=%00%01%02") and lines[0].endswith(
            " HTTP/1.1")
        port = url.split(":")[2].split("/")[0]
        assert f"Host: 127.0.0.1:{port}" in lines
        assert f"User-Agent: torrent/{__version__}" in lines
        assert "Accept-Encoding: gzip" in lines and "Connection: close" in lines
        assert "&event=started" in lines[0]

    run(scenario())


def test_http_oversized_body(run: Run) -> None:
    big = b"HTTP/1.1 200 OK\r\n\r\n" + b"d5:peers" + b"9" * (3 * 1024 * 1024)  # read-until-close, 3 MiB

    async def scenario() -> None:
        async with http_tracker(lambda head: big) as (url, _):
            with pytest.raises(TrackerResponseError, match="body larger than 2097152 bytes"):
                await announce(url, req(HASH, b"x", 1), timeout=5)

    run(scenario())


def test_http_scrape(run: Run) -> None:
    body = encode({b"files": {HASH: {b"complete": 2, b"downloaded": 9, b"incomplete": 4}}})

    async def scenario() -> None:
        async with http_tracker(lambda head: reply(body)) as (url, heads):
            r = await scrape(url, [HASH], timeout=5)
            assert (r.files[HASH].complete, r.files[HASH].downloaded, r.files[HASH].incomplete) == (2, 9, 4)
            assert heads[0].startswith(b"GET /scrape?info_hash=%00%01")
            with pytest.raises(TrackerError, match="does not support scrape") as info:
                await scrape(url.replace("/announce", "/tracker"), [HASH], timeout=5)
            assert info.value.url == url.replace("/announce", "/tracker")

    run(scenario())


def test_connection_refused(run: Run) -> None:
    async def scenario() -> None:
        url = f"http://127.0.0.1:{closed_port()}/announce"
        with pytest.raises(TrackerUnreachable, match="connection refused") as info:
            await announce(url, req(HASH, b"x", 1), timeout=5)
        assert str(info.value).startswith(f"tracker {url}: ")
        udp_url = f"udp://127.0.0.1:{closed_port(socket.SOCK_DGRAM)}"
        with pytest.raises(TrackerUnreachable, match="connection refused"):  # ICMP port unreachable
            await announce(udp_url, req(HASH, b"x", 1), timeout=5)

    run(scenario())


def test_unsupported_scheme(run: Run) -> None:
    async def scenario() -> None:
        with pytest.raises(TrackerError, match="unsupported URL scheme 'wss'"):
            await announce("wss://127.0.0.1:1/announce", req(HASH, b"x", 1))
        with pytest.raises(TrackerError, match="no port"):
            await announce("udp://127.0.0.1/announce", req(HASH, b"x", 1))

    run(scenario())


# ---- misbehaving UDP trackers --------------------------------------------------------

CID = 0x1122334455667788


class FakeUdpTracker(asyncio.DatagramProtocol):
    """A BEP 15 tracker whose ``mode`` decides how it misbehaves."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.actions: list[int] = []
        self.connection_ids: list[int] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        cid, action, tid = struct.unpack_from(">QII", data)
        self.actions.append(action)
        self.connection_ids.append(cid)
        if self.mode == "silent" or (self.mode == "drop_first_connect" and self.actions.count(0) == 1):
            return
        if self.mode == "wrong_tid":
            tid ^= 0xFFFF
        if self.mode == "error":
            out = struct.pack(">II", 3, tid) + b"you are banned"
        elif action == 0:
            out = struct.pack(">IIQ", 0, tid, CID)
        elif action == 1:
            out = struct.pack(">IIiii", 1, tid, 900, 3, 4) + bytes([127, 0, 0, 9]) + struct.pack(">H", 6881)
        else:
            count = (len(data) - 16) // 20
            out = struct.pack(">II", 2, tid) + b"".join(struct.pack(">iii", i, 10, 20) for i in range(count))
        self.transport.sendto(out, addr)


@asynccontextmanager
async def udp_tracker(mode: str) -> AsyncIterator[tuple[str, FakeUdpTracker]]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(lambda: FakeUdpTracker(mode),
                                                           local_addr=("127.0.0.1", 0))
    try:
        yield f"udp://127.0.0.1:{transport.get_extra_info('sockname')[1]}/announce", proto
    finally:
        transport.close()


def test_udp_retransmits_dropped_connect(run: Run) -> None:
    async def scenario() -> None:
        async with udp_tracker("drop_first_connect") as (url, tracker):
            started = time.monotonic()
            r = await announce(url, req(HASH, b"x", 1), timeout=5, udp_base_timeout=0.2)
            assert 0.15 < time.monotonic() - started < 2
            assert r.peers == (("127.0.0.9", 6881),) and (r.interval, r.complete, r.incomplete) == (900, 4, 3)
            assert tracker.actions == [0, 0, 1]
            assert tracker.connection_ids == [0x41727101980, 0x41727101980, CID]

    run(scenario())


def test_udp_never_answers(run: Run) -> None:
    async def scenario() -> None:
        async with udp_tracker("silent") as (url, tracker):
            started = time.monotonic()
            with pytest.raises(TrackerTimeout) as info:
                await announce(url, req(HASH, b"x", 1), timeout=0.6, udp_base_timeout=0.1)
            assert 0.55 < time.monotonic() - started < 3
            # sent at 0, 0.1 and 0.3 s; the fourth would go at 0.7 s
            assert tracker.actions == [0, 0, 0]
            assert str(info.value) == f"tracker {url}: no answer within 0.6 s (3 attempts)"

    run(scenario())


def test_udp_gives_up_after_nine_transmissions(run: Run) -> None:
    async def scenario() -> None:
        async with udp_tracker("silent") as (url, tracker):
            with pytest.raises(TrackerTimeout) as info:
                await announce(url, req(HASH, b"x", 1), timeout=10, udp_base_timeout=0.002)
            assert info.value.attempts == 9 and len(tracker.actions) == 9  # n = 0..8

    run(scenario())


def test_udp_wrong_transaction_id_is_ignored(run: Run) -> None:
    async def scenario() -> None:
        async with udp_tracker("wrong_tid") as (url, tracker):
            with pytest.raises(TrackerTimeout):
                await announce(url, req(HASH, b"x", 1), timeout=0.5, udp_base_timeout=0.1)
            assert len(tracker.actions) >= 2 and set(tracker.actions) == {0}

    run(scenario())


def test_udp_error_action(run: Run) -> None:
    async def scenario() -> None:
        async with udp_tracker("error") as (url, _):
            with pytest.raises(TrackerFailure) as info:
                await announce(url, req(HASH, b"x", 1), timeout=5)
            assert info.value.failure_reason == "you are banned"
            assert str(info.value) == f"tracker {url}: tracker refused the request: you are banned"

    run(scenario())


def test_udp_scrape_in_batches_over_one_connection(run: Run) -> None:
    hashes = [i.to_bytes(20, "big") for i in range(80)]

    async def scenario() -> None:
        async with udp_tracker("ok") as (url, tracker):
            r = await scrape(url, hashes, timeout=5)
            assert tracker.actions == [0, 2, 2]  # one connect, then 74 + 6 hashes
            assert len(r.files) == 80
            assert r.files[hashes[0]].complete == 0 and r.files[hashes[73]].complete == 73
            assert r.files[hashes[74]].complete == 0 and r.files[hashes[79]].incomplete == 20

    run(scenario())


# ---- hostile answers never escape as anything but TrackerError (issue 13, case 6) ----------

@pytest.mark.parametrize("location", [
    "http://[::1",                     # urljoin/urlsplit: ValueError "Invalid IPv6 URL"
    "http://[::1]x/announce",          # urlsplit: ValueError on what follows the bracket
    "http://127.0.0.1:99999/announce",  # port out of range
    "http://127.0.0.1:port/announce",   # port not a number
    "http://" + "a" * 64 + ".invalid/announce",  # IDNA: a label over 63 characters
    "http://a..invalid/announce",      # IDNA: an empty label
    "http://nul\x00host.invalid/announce",  # getaddrinfo: embedded NUL
    "http:///announce",                # no host
])
def test_http_redirect_to_a_malformed_url_is_a_tracker_error(run: Run[Any], location: str) -> None:
    answer = reply(b"", "302 Found", f"Location: {location}\r\n")

    async def scenario() -> None:
        async with http_tracker(lambda head: answer) as (url, _):
            with pytest.raises(TrackerError) as info:
                await announce(url, req(HASH, b"x", 1), timeout=5)
            assert str(info.value).startswith(f"tracker {url}: ") and "\n" not in str(info.value)
            with pytest.raises(TrackerError):
                await scrape(url, [HASH], timeout=5)

    run(scenario())


@pytest.mark.parametrize("url", [
    "http://[::1/announce", "udp://[::1:80/announce", "http://" + "a" * 64 + ".invalid/announce",
    "udp://" + "a" * 64 + ".invalid:80/announce", "http://nul\x00host.invalid/announce",
    "udp://nul\x00host.invalid:80/announce", "https://127.0.0.1:0/announce",
])
def test_malformed_tracker_urls_are_tracker_errors(run: Run[Any], url: str) -> None:
    async def scenario() -> None:
        with pytest.raises(TrackerError):
            await announce(url, req(HASH, b"x", 1), timeout=5)

    run(scenario())


def test_http_absurd_numbers_are_bounded(run: Run) -> None:
    huge = 10**400
    body = encode({b"interval": huge, b"min interval": huge, b"complete": huge, b"incomplete": -3,
                   b"peers": bytes([127, 0, 0, 7, 0x1F, 0x90, 127, 0, 0, 8, 0, 0])})

    async def scenario() -> None:
        async with http_tracker(lambda head: reply(body)) as (url, _):
            r = await announce(url, req(HASH, b"x", 1), timeout=5)
        assert r.peers == (("127.0.0.7", 8080),)  # port 0 dropped
        assert 0 < r.interval < 1 << 32 and r.min_interval is not None and r.min_interval < 1 << 32
        assert r.complete is not None and r.complete < 1 << 32 and r.incomplete is None

    run(scenario())


# ---- an unresolvable host leaves no future behind (issue 13, case 8) ------------------------

# Over 255 bytes in all (each label within 63): the C resolver refuses it without asking
# any name server, so the failure is a real gaierror that never leaves this machine.
UNRESOLVABLE = ".".join(["a" * 63] * 5) + ".invalid"


def collect_loop_errors() -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
    return errors


async def settle() -> None:
    """Let the resolver threads finish, then collect what nobody holds any more."""
    for _ in range(3):
        await asyncio.sleep(0.1)
        gc.collect()


@pytest.mark.parametrize("scheme", ["http", "udp"])
def test_unresolvable_host_leaves_no_unretrieved_future(run: Run[Any], scheme: str) -> None:
    url = f"{scheme}://{UNRESOLVABLE}:6969/announce"

    async def scenario() -> None:
        errors = collect_loop_errors()
        with pytest.raises(TrackerUnreachable, match="cannot resolve host"):
            await announce(url, req(HASH, b"x", 1), timeout=5, local_host="127.0.0.1")
        # Cut short while the name is being resolved: by the caller, or by the overall timeout.
        for steps in range(6):
            task = asyncio.ensure_future(announce(url, req(HASH, b"x", 1), timeout=5))
            for _ in range(steps):
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TrackerError):
                await task
        for timeout in (0.0001, 0.0005, 0.001, 0.002):
            with contextlib.suppress(TrackerError):
                await announce(url, req(HASH, b"x", 1), timeout=timeout)
        await settle()
        assert [c.get("message") for c in errors] == []

    run(scenario())
    gc.collect()


def test_session_closing_during_an_announce_to_an_unresolvable_host(tmp_path: Path) -> None:
    async def scenario(tmp_path: Path) -> None:
        errors = collect_loop_errors()
        url = f"http://{UNRESOLVABLE}/announce"
        _, save, torrent_file = make_torrent(tmp_path, 64 * 1024, files=1, trackers=[[url]])
        session = await start_session(tmp_path, "a", local_settings(tracker__stopped_timeout=0.5))
        try:
            tid = await session.add(torrent_file, save_path=save)
            for _ in range(100_000):  # until the first announce is under way
                if any(t.status == "updating" for t in session.trackers(tid)):
                    break
                await asyncio.sleep(0)
        finally:
            await session.close()
        await settle()
        assert [c.get("message") for c in errors] == []

    for name, factory in LOOPS.items():
        with asyncio.Runner(loop_factory=factory) as r:
            r.run(asyncio.wait_for(scenario(tmp_path / name), SCENARIO_DEADLINE))
        gc.collect()


def test_session_announcer_survives_absurd_interval_and_malformed_redirect(tmp_path: Path) -> None:
    """The peers of a reply with ``interval`` 10**400 are used and the next announce is
    scheduled; a redirect to ``http://[::1`` is a tracker error in the snapshot, and a
    re-announce still goes out."""
    huge = 10**400

    async def scenario(tmp_path: Path) -> None:
        peer_port = closed_port()
        tracker = FakeTracker(peers=[("127.0.0.1", peer_port)], interval=huge)
        await tracker.start()
        async with http_tracker(lambda head: reply(b"", "302 Found", "Location: http://[::1\r\n")) as (bad, heads):
            _, save, torrent_file = make_torrent(tmp_path, 64 * 1024, files=1, trackers=[[tracker.url], [bad]])
            settings = local_settings(tracker__stopped_timeout=0.5, tracker__backoff_base=1.0,
                                      tracker__backoff_max=1.0)
            session = await start_session(tmp_path, "a", settings)
            try:
                tid = await session.add(torrent_file, save_path=save)
                snap = await wait_for(session, tid, lambda s: s.peers_known >= 1, timeout=10,
                                      what="the tracker's peer to be known")
                (good,) = [t for t in session.trackers(tid) if t.url == tracker.url]
                assert good.status == "working" and good.peers == 1 and good.last_error is None
                assert good.next_announce is not None and good.next_announce < time.time() + 2 * 86400
                assert snap.state == "seeding"
                tracker.close()  # the first tier fails from now on, then the second is asked

                def status(url: str) -> str:
                    return next(t.status for t in session.trackers(tid) if t.url == url)

                await session.announce(tid)
                await wait_for(session, tid, lambda s: status(tracker.url) == "error", timeout=10,
                               what="the closed tracker's error")
                await session.announce(tid)
                await wait_for(session, tid, lambda s: status(bad) == "error", timeout=10,
                               what="the redirecting tracker's error")
                (redirecting,) = [t for t in session.trackers(tid) if t.url == bad]
                assert redirecting.last_error is not None and "malformed URL" in redirecting.last_error
                asked = len(heads)  # the announcer lives on: re-announces reach it again
                deadline = time.monotonic() + 10
                while len(heads) == asked and time.monotonic() < deadline:
                    await session.announce(tid)
                    await asyncio.sleep(0.3)
                assert len(heads) > asked
            finally:
                await session.close()
                tracker.close()

    for name, factory in LOOPS.items():
        with asyncio.Runner(loop_factory=factory) as r:
            r.run(asyncio.wait_for(scenario(tmp_path / name), SCENARIO_DEADLINE))
