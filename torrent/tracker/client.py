"""Tracker I/O on asyncio: one announce or scrape per call, HTTP(S) or UDP.

Thin by design: bytes are built and parsed by the sans-IO modules
(``http``, ``udp``); this module opens connections, resolves names with the
loop's ``getaddrinfo``, keeps time, and turns every failure into a
``TrackerError`` subclass whose one-line message names the tracker URL.

UDP goes through a ``DatagramEndpoint``: ``send(datagram, addr)`` plus a
``received`` queue of ``(datagram, addr)`` (or an exception from the socket).
By default each call opens its own endpoint; pass ``udp_socket_factory`` to
run the same transaction over another socket (the session's shared one).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

from torrent import __version__
from torrent.core.settings import DEFAULT_LIMITS, Limits
from torrent.codec.tracker import http, udp
from torrent.codec.tracker.announce import (
    AnnounceRequest,
    AnnounceResponse,
    ScrapeResponse,
    TrackerError,
    TrackerFailure,
    TrackerHTTPError,
    TrackerResponseError,
    TrackerTimeout,
    TrackerUnreachable,
    display_text,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "USER_AGENT",
    "DatagramEndpoint",
    "UdpSocketFactory",
    "open_datagram_endpoint",
    "announce",
    "scrape",
    "run_udp_transaction",
]

# Whole call, redirects and UDP retransmissions included. BEP 15's schedule
# (15 s, 30 s, 60 s …) would take over two hours to give up; a session would
# rather move to the next tracker of the tier after a minute.
DEFAULT_TIMEOUT = 60.0
USER_AGENT = f"torrent/{__version__}"
_READ_SIZE = 64 * 1024
# Datagrams waiting to be looked at; more is a flood, and UDP may drop.
_UDP_QUEUE = 64

Address = tuple[Any, ...]


class DatagramEndpoint(Protocol):
    """What a UDP tracker transaction needs from a socket."""

    received: asyncio.Queue[tuple[bytes, Address] | BaseException]

    def send(self, data: bytes, addr: Address) -> None: ...

    def close(self) -> None: ...


UdpSocketFactory = Callable[[int, Address], Awaitable[DatagramEndpoint]]
"""``(address family, tracker address) → endpoint``; the caller closes it."""


# ---- errors ------------------------------------------------------------------

def _os_error(exc: OSError, host: str, port: int) -> TrackerError:
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    if isinstance(exc, socket.gaierror):
        return TrackerUnreachable(f"cannot resolve host {host!r} ({exc.strerror or exc})")
    if isinstance(exc, ConnectionRefusedError):
        return TrackerUnreachable(f"connection refused by {where}")
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return TrackerUnreachable(f"connection reset by {where}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TrackerUnreachable(f"TLS certificate of {where} not accepted ({exc.verify_message})")
    if isinstance(exc, ssl.SSLError):
        return TrackerUnreachable(f"TLS error with {where} ({exc.reason or exc})")
    return TrackerUnreachable(f"cannot reach {where} ({exc.strerror or exc})")


# ---- HTTP --------------------------------------------------------------------

def _request_target(parts: Any) -> str:
    """Path and query as sent on the request line: anything outside printable ASCII escaped."""
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    raw = target.encode("utf-8", "surrogateescape")
    return "".join(chr(b) if 0x21 <= b <= 0x7E else f"%{b:02X}" for b in raw)


def _split_url(url: str) -> Any:
    """``urlsplit`` whose complaints (an unclosed ``[``, a bad port…) are a ``TrackerError``."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # parsed lazily: a bad port raises here
    except ValueError as exc:
        raise TrackerError(f"bad tracker URL ({exc})") from None
    return parts


async def _resolve(host: str, port: int, kind: int) -> list[tuple[int, Address]]:
    """``(family, sockaddr)`` for each address of ``host``, from the loop's ``getaddrinfo``.

    Resolving here, and connecting to the numeric addresses, keeps the lookup a
    future this task awaits: cancelled with it, never left behind. (uvloop's
    ``create_connection`` resolves in futures of its own that it does not cancel
    when the caller is cancelled; one failing later was "Future exception was
    never retrieved … gaierror".)
    """
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=kind)
    except OSError as exc:
        raise _os_error(exc, host, port) from None
    except ValueError:  # IDNA (an empty or over-long label: UnicodeError), an embedded NUL
        raise TrackerUnreachable(f"invalid host name {host!r}") from None
    if not infos:
        raise TrackerUnreachable(f"cannot resolve host {host!r} (no addresses)")
    return [(family, sockaddr) for family, _, _, _, sockaddr in infos]


async def _open_connection(host: str, port: int, *, tls: ssl.SSLContext | None,
                           local_host: str | None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Resolve ``host``, then try its addresses in order until one connects."""
    error: OSError | None = None
    for family, sockaddr in await _resolve(host, port, socket.SOCK_STREAM):
        try:
            return await asyncio.open_connection(sockaddr[0], sockaddr[1], family=family, ssl=tls,
                                                 server_hostname=host if tls else None,
                                                 local_addr=(local_host, 0) if local_host else None)
        except OSError as exc:
            error = exc
        except ValueError as exc:  # e.g. a server_hostname ssl will not take
            raise TrackerUnreachable(f"cannot connect to {host!r} ({exc})") from None
    assert error is not None
    raise _os_error(error, host, port)


async def _http_get(url: str, *, limits: Limits, ssl_context: ssl.SSLContext | None,
                    local_host: str | None) -> http.HttpResponse:
    parts = _split_url(url)
    port = parts.port
    scheme = parts.scheme.lower()
    host = parts.hostname
    if not host:
        raise TrackerError("tracker URL has no host")
    tls = scheme == "https"
    port = port or (443 if tls else 80)
    host_header = f"[{host}]" if ":" in host else host
    if port != (443 if tls else 80):
        host_header += f":{port}"
    request = (
        f"GET {_request_target(parts)} HTTP/1.1\r\n"
        f"Host: {host_header}\r\n"
        f"User-Agent: {USER_AGENT}\r\n"
        "Accept-Encoding: gzip\r\n"
        "Connection: close\r\n"
        "\r\n"
    ).encode("ascii", "replace")
    context = (ssl_context or ssl.create_default_context()) if tls else None
    parser = http.HttpResponseParser(max_header_size=limits.tracker_max_header,
                                     max_body_size=limits.tracker_max_response)
    reader, writer = await _open_connection(host, port, tls=context, local_host=local_host)
    try:
        writer.write(request)
        await writer.drain()
        while True:
            data = await reader.read(_READ_SIZE)
            if not data:
                return parser.feed_eof()
            result = parser.feed(data)
            if result is not http.NEED_DATA:
                assert isinstance(result, http.HttpResponse)
                return result
    except OSError as exc:
        raise _os_error(exc, host, port) from None
    finally:
        writer.close()


async def _http_fetch(url: str, *, limits: Limits, ssl_context: ssl.SSLContext | None,
                      local_host: str | None = None) -> bytes:
    """GET ``url`` following redirects; the body of a 2xx answer."""
    max_redirects = limits.tracker_max_redirects
    current = url
    for hop in range(max_redirects + 1):
        resp = await _http_get(current, limits=limits, ssl_context=ssl_context, local_host=local_host)
        if not resp.is_redirect:
            break
        if not resp.location:
            raise TrackerHTTPError(resp.status, f"{resp.reason} (redirect without a Location)".strip())
        if hop == max_redirects:
            raise TrackerResponseError(f"more than {max_redirects} redirects")
        try:
            target = urljoin(current, resp.location)
            scheme = urlsplit(target).scheme.lower()
        except ValueError:  # e.g. "http://[::1": urljoin parses the target
            raise TrackerResponseError(f"redirect to a malformed URL {display_text(resp.location, limit=100)!r}") \
                from None
        if scheme not in ("http", "https"):
            raise TrackerResponseError(f"redirect to a non-HTTP URL {target[:100]!r}")
        current = target
    if not 200 <= resp.status < 300:
        # Some trackers send their "failure reason" with a 4xx status: show it.
        try:
            http.parse_announce_response(resp.body, limits)
        except TrackerFailure:
            raise
        except TrackerError:
            pass
        raise TrackerHTTPError(resp.status, resp.reason)
    return resp.body


# ---- UDP ---------------------------------------------------------------------

class _QueueProtocol(asyncio.DatagramProtocol):
    __slots__ = ("queue",)

    def __init__(self, queue: asyncio.Queue[tuple[bytes, Address] | BaseException]) -> None:
        self.queue = queue

    def _put(self, item: tuple[bytes, Address] | BaseException) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(item)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._put((data, addr))

    def error_received(self, exc: Exception) -> None:
        self._put(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self._put(exc)


class _ConnectedEndpoint:
    """A UDP socket connected to one tracker: the kernel drops other senders'
    datagrams and reports ICMP "port unreachable" as ConnectionRefusedError."""

    def __init__(self, transport: asyncio.DatagramTransport,
                 queue: asyncio.Queue[tuple[bytes, Address] | BaseException]) -> None:
        self._transport = transport
        self.received = queue

    def send(self, data: bytes, addr: Address) -> None:
        self._transport.sendto(data)

    def close(self) -> None:
        self._transport.close()


async def open_datagram_endpoint(family: int, addr: Address, local_host: str | None = None) -> DatagramEndpoint:
    """The default ``UdpSocketFactory``: a fresh socket connected to ``addr``
    (from ``local_host`` when given)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[bytes, Address] | BaseException] = asyncio.Queue(_UDP_QUEUE)
    transport, _ = await loop.create_datagram_endpoint(lambda: _QueueProtocol(queue), remote_addr=addr[:2],
                                                       family=family,
                                                       local_addr=(local_host, 0) if local_host else None)
    return _ConnectedEndpoint(transport, queue)


async def run_udp_transaction(tx: udp.UdpTrackerTransaction, endpoint: DatagramEndpoint,
                              addr: Address) -> AnnounceResponse | ScrapeResponse:
    """Drive ``tx`` to its result over ``endpoint`` using the loop's clock.

    Datagrams from other addresses are ignored. Raises what ``tx`` raises
    (``TrackerFailure``, ``TrackerResponseError``, ``TrackerTimeout``) and
    ``TrackerUnreachable`` for a socket error; the caller bounds the time.
    """
    loop = asyncio.get_running_loop()
    endpoint.send(tx.start(loop.time()), addr)
    while not tx.done:
        wait = tx.deadline - loop.time()
        if wait <= 0:
            endpoint.send(tx.on_timeout(loop.time()), addr)
            continue
        try:
            item = await asyncio.wait_for(endpoint.received.get(), wait)
        except TimeoutError:
            continue
        if isinstance(item, BaseException):
            if isinstance(item, OSError):
                raise _os_error(item, str(addr[0]), int(addr[1]))
            raise TrackerUnreachable(f"UDP socket error ({item})")
        data, source = item
        if tuple(source[:2]) != tuple(addr[:2]):
            continue
        reply = tx.receive(data, loop.time())
        if reply is not None:
            endpoint.send(reply, addr)
    assert tx.result is not None
    return tx.result


async def _udp_resolve(host: str, port: int) -> tuple[int, Address]:
    return (await _resolve(host, port, socket.SOCK_DGRAM))[0]


class _Progress:
    """What a call had done when the overall timeout cut it short, for the message."""

    __slots__ = ("transactions",)

    def __init__(self) -> None:
        self.transactions: list[udp.UdpTrackerTransaction] = []

    @property
    def attempts(self) -> int | None:
        return sum(tx.attempts for tx in self.transactions) or None


async def _udp_run(url: str, make: Callable[[udp.ConnectionId | None, bool, bytes], udp.UdpTrackerTransaction],
                   rounds: int, udp_socket_factory: UdpSocketFactory | None, progress: _Progress,
                   local_host: str | None) -> list[Any]:
    target = udp.parse_udp_url(url)
    family, addr = await _udp_resolve(target.host, target.port)
    try:
        if udp_socket_factory is not None:
            endpoint = await udp_socket_factory(family, addr)
        else:
            endpoint = await open_datagram_endpoint(family, addr, local_host)
    except OSError as exc:
        raise _os_error(exc, target.host, target.port) from None
    results = []
    connection = None
    try:
        for _ in range(rounds):
            tx = make(connection, family == socket.AF_INET6, target.url_data)
            progress.transactions.append(tx)
            results.append(await run_udp_transaction(tx, endpoint, addr))
            connection = tx.connection  # BEP 15: reuse the connection id while it is fresh
    finally:
        endpoint.close()
    return results


# ---- entry points ----------------------------------------------------------------

def _scheme(url: str) -> str:
    return url.split(":", 1)[0].lower() if ":" in url else ""


async def _bounded(url: str, timeout: float, work: Awaitable[Any], progress: _Progress) -> Any:
    """Run ``work`` under the overall ``timeout``; name ``url`` in any error."""
    try:
        async with asyncio.timeout(timeout):
            return await work
    except TimeoutError:
        raise TrackerTimeout(timeout, attempts=progress.attempts, url=url) from None
    except TrackerError as exc:
        raise exc.at(url) from None


async def announce(url: str, req: AnnounceRequest, *, timeout: float = DEFAULT_TIMEOUT,
                   limits: Limits = DEFAULT_LIMITS, udp_socket_factory: UdpSocketFactory | None = None,
                   udp_base_timeout: float = udp.BASE_TIMEOUT,
                   ssl_context: ssl.SSLContext | None = None, local_host: str | None = None) -> AnnounceResponse:
    """Announce ``req`` to the tracker at ``url`` (http, https or udp).

    ``timeout`` bounds the whole call (DNS, connect, redirects, UDP
    retransmissions); ``udp_base_timeout`` is BEP 15's 15 s before the first
    retransmission (doubling each time). ``local_host`` is the address our
    sockets are bound to (the session's ``network.bind``). Every failure is a
    ``TrackerError``.
    """
    scheme = _scheme(url)
    progress = _Progress()

    async def work() -> AnnounceResponse:
        if scheme in ("http", "https"):
            body = await _http_fetch(http.build_announce_url(url, req), limits=limits, ssl_context=ssl_context,
                                     local_host=local_host)
            return http.parse_announce_response(body, limits)
        if scheme == "udp":
            def make(conn: udp.ConnectionId | None, ipv6: bool, url_data: bytes) -> udp.UdpTrackerTransaction:
                return udp.UdpTrackerTransaction(announce=req, ipv6=ipv6, url_data=url_data, connection=conn,
                                                 base_timeout=udp_base_timeout)
            (result,) = await _udp_run(url, make, 1, udp_socket_factory, progress, local_host)
            return result
        raise TrackerError(f"unsupported URL scheme {scheme!r}" if scheme else "URL has no scheme")

    result: AnnounceResponse = await _bounded(url, timeout, work(), progress)
    return result


async def scrape(url: str, info_hashes: Iterable[bytes], *, timeout: float = DEFAULT_TIMEOUT,
                 limits: Limits = DEFAULT_LIMITS, udp_socket_factory: UdpSocketFactory | None = None,
                 udp_base_timeout: float = udp.BASE_TIMEOUT,
                 ssl_context: ssl.SSLContext | None = None, local_host: str | None = None) -> ScrapeResponse:
    """Scrape (BEP 48 / BEP 15) the announce URL ``url`` for ``info_hashes``.

    HTTP trackers whose URL does not end in ``announce…`` cannot be scraped
    (TrackerError). UDP scrapes of more than 74 hashes go in several requests
    over one connection id.
    """
    hashes: Sequence[bytes] = tuple(info_hashes)
    scheme = _scheme(url)
    progress = _Progress()

    async def work() -> ScrapeResponse:
        if not hashes:
            return ScrapeResponse()
        if scheme in ("http", "https"):
            _split_url(url)
            target = http.scrape_url(url)
            if target is None:
                raise TrackerError("tracker does not support scrape (its URL path does not end in 'announce')")
            body = await _http_fetch(http.build_scrape_url(target, hashes), limits=limits, ssl_context=ssl_context,
                                     local_host=local_host)
            return http.parse_scrape_response(body, limits)
        if scheme == "udp":
            batches = [hashes[i:i + udp.MAX_SCRAPE_HASHES] for i in range(0, len(hashes), udp.MAX_SCRAPE_HASHES)]
            pending = iter(batches)

            def make(conn: udp.ConnectionId | None, ipv6: bool, url_data: bytes) -> udp.UdpTrackerTransaction:
                return udp.UdpTrackerTransaction(scrape=next(pending), ipv6=ipv6, connection=conn,
                                                 base_timeout=udp_base_timeout)
            results = await _udp_run(url, make, len(batches), udp_socket_factory, progress, local_host)
            files = {h: s for r in results for h, s in r.files.items()}
            return ScrapeResponse(files=files)
        raise TrackerError(f"unsupported URL scheme {scheme!r}" if scheme else "URL has no scheme")

    result: ScrapeResponse = await _bounded(url, timeout, work(), progress)
    return result
