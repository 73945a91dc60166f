"""Sans-IO HTTP tracker codec: announce/scrape URLs out, response bytes in.

* BEP 3 announce URL and response (``failure reason``, ``warning message``,
  ``interval``, ``min interval``, ``tracker id``, ``complete``, ``incomplete``,
  ``peers``); BEP 23 compact peers; BEP 7 ``peers6``; BEP 24 ``external ip``.
* BEP 48 scrape URL and response.
* ``HttpResponseParser``: just enough HTTP/1.1 for a tracker GET: status line,
  headers (size-capped), ``Content-Length`` / ``chunked`` / read-until-close
  bodies (size-capped), gzip and deflate ``Content-Encoding`` with the
  decompressed size capped too, redirects surfaced with their ``Location``.

No sockets, no clocks: ``torrent.tracker.client`` does the I/O. Parsers raise
``TrackerError`` subclasses without a URL; the client names the tracker.

Leniency, decided once: a successful response without ``interval`` gets
``DEFAULT_INTERVAL`` (1800 s); numbers above ``MAX_TRACKER_NUMBER`` are read
as that; optional counts (``complete``, ``incomplete``,
``min interval``) of the wrong type are ignored; ``peers`` and ``peers6`` of
the wrong shape are errors, except single bad entries of a dict-model list,
which are dropped.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote_from_bytes, urlsplit

from torrent.codec import bencoding
from torrent.core.errors import BencodeError
from torrent.core.settings import DEFAULT_LIMITS, Limits
from torrent.codec.tracker.announce import (
    DEFAULT_INTERVAL,
    MAX_TRACKER_NUMBER,
    AnnounceRequest,
    AnnounceResponse,
    Event,
    ScrapeResponse,
    ScrapeStats,
    TrackerFailure,
    TrackerResponseError,
    dedup_peers,
    display_text,
    parse_compact_peers,
    parse_compact_peers6,
    parse_dict_peers,
    parse_external_ip,
)

__all__ = [
    "build_announce_url",
    "parse_announce_response",
    "scrape_url",
    "build_scrape_url",
    "parse_scrape_response",
    "NEED_DATA",
    "HttpResponse",
    "HttpResponseParser",
    "REDIRECT_STATUSES",
]


# ---- URLs ------------------------------------------------------------------

def _escape(raw: bytes) -> str:
    # Byte by byte: unreserved characters (RFC 3986) stay, everything else is %XX.
    return quote_from_bytes(raw, safe="")


def _append_query(base_url: str, params: Iterable[tuple[str, str]]) -> str:
    """Add already-escaped ``name=value`` pairs, keeping the URL's own query as it is."""
    base = base_url.split("#", 1)[0]  # a fragment is never sent
    extra = "&".join(f"{name}={value}" for name, value in params)
    if "?" not in base:
        sep = "?"
    elif base.endswith(("?", "&")):
        sep = ""
    else:
        sep = "&"
    return f"{base}{sep}{extra}"


def build_announce_url(base_url: str, req: AnnounceRequest) -> str:
    """The BEP 3 announce GET URL for ``req`` on the tracker ``base_url``."""
    params = [
        ("info_hash", _escape(req.info_hash)),
        ("peer_id", _escape(req.peer_id)),
        ("port", str(req.port)),
        ("uploaded", str(req.uploaded)),
        ("downloaded", str(req.downloaded)),
        ("left", str(req.left)),
        ("compact", "1" if req.compact else "0"),
    ]
    if req.event is not Event.NONE:
        params.append(("event", req.event.value))
    if req.numwant is not None:
        params.append(("numwant", str(req.numwant)))
    # The key is an opaque token; like uTorrent and libtorrent we send 8 hex digits.
    params.append(("key", f"{req.key:08X}"))
    if req.tracker_id is not None:
        params.append(("trackerid", _escape(req.tracker_id)))
    if req.ip is not None:
        params.append(("ip", _escape(req.ip.encode())))
    return _append_query(base_url, params)


def scrape_url(announce_url: str) -> str | None:
    """BEP 48: replace ``announce`` at the start of the last path component by ``scrape``.

    ``None`` when the tracker does not support scrape by that convention.
    """
    base, hash_, fragment = announce_url.partition("#")
    path_end = base.find("?")
    head, query = (base, "") if path_end < 0 else (base[:path_end], base[path_end:])
    if not urlsplit(head).path:
        return None
    slash = head.rfind("/")
    if not head.startswith("announce", slash + 1):
        return None
    return head[: slash + 1] + "scrape" + head[slash + 1 + len("announce"):] + query


def build_scrape_url(scrape_url: str, info_hashes: Iterable[bytes]) -> str:
    """The scrape URL asking for each of ``info_hashes`` (BEP 48 allows several)."""
    hashes = list(info_hashes)
    for h in hashes:
        if not isinstance(h, bytes) or len(h) != 20:
            raise ValueError("info-hashes must be 20 bytes each")
    return _append_query(scrape_url, [("info_hash", _escape(h)) for h in hashes])


# ---- bencoded bodies ---------------------------------------------------------

def _decode_dict(body: bytes, limits: Limits, what: str) -> dict[bytes, Any]:
    if not body:
        raise TrackerResponseError(f"empty {what} response")
    try:
        value = bencoding.decode(body, limits=limits)
    except BencodeError as exc:
        start = display_text(bytes(body[:40]).decode("latin-1"), limit=40)
        raise TrackerResponseError(f"{what} response is not bencoded ({exc.reason}; starts {start!r})") from None
    if not isinstance(value, dict):
        raise TrackerResponseError(f"{what} response is a bencoded {type(value).__name__}, not a dictionary")
    return value


def _check_failure(data: dict[bytes, Any]) -> None:
    reason = data.get(b"failure reason")
    if reason is not None:
        text = display_text(reason) if isinstance(reason, bytes) else display_text(str(reason))
        raise TrackerFailure(text or "(no reason given)")


def _optional_count(data: dict[bytes, Any], key: bytes) -> int | None:
    """A non-negative integer (clamped to ``MAX_TRACKER_NUMBER``), or None when absent or not one."""
    value = data.get(key)
    return min(value, MAX_TRACKER_NUMBER) if type(value) is int and value >= 0 else None


def parse_announce_response(body: bytes, limits: Limits = DEFAULT_LIMITS) -> AnnounceResponse:
    """Parse a bencoded announce response body (already de-chunked and decompressed)."""
    data = _decode_dict(body, limits, "announce")
    _check_failure(data)

    interval = data.get(b"interval", DEFAULT_INTERVAL)
    if type(interval) is not int or interval < 0:
        raise TrackerResponseError(f"'interval' is {display_text(repr(interval), limit=40)}, "
                                   "not a non-negative integer")
    interval = min(interval, MAX_TRACKER_NUMBER)

    peers: list[tuple[str, int]] = []
    raw = data.get(b"peers")
    if isinstance(raw, bytes):
        peers.extend(parse_compact_peers(raw))
    elif raw is not None:
        peers.extend(parse_dict_peers(raw))
    raw6 = data.get(b"peers6")
    if isinstance(raw6, bytes):
        peers.extend(parse_compact_peers6(raw6))
    elif raw6 is not None:
        raise TrackerResponseError("'peers6' is not a compact string")

    warning = data.get(b"warning message")
    tracker_id = data.get(b"tracker id")
    return AnnounceResponse(
        interval=interval,
        peers=dedup_peers(peers),
        min_interval=_optional_count(data, b"min interval"),
        tracker_id=tracker_id if isinstance(tracker_id, bytes) and tracker_id else None,
        complete=_optional_count(data, b"complete"),
        incomplete=_optional_count(data, b"incomplete"),
        warning=display_text(warning) if isinstance(warning, bytes) else None,
        external_ip=parse_external_ip(data.get(b"external ip")),
    )


def parse_scrape_response(body: bytes, limits: Limits = DEFAULT_LIMITS) -> ScrapeResponse:
    """BEP 48: ``files`` maps each 20-byte info-hash to complete/downloaded/incomplete."""
    data = _decode_dict(body, limits, "scrape")
    _check_failure(data)
    files = data.get(b"files", {})
    if not isinstance(files, dict):
        raise TrackerResponseError("scrape 'files' is not a dictionary")
    stats: dict[bytes, ScrapeStats] = {}
    for info_hash, entry in files.items():
        if len(info_hash) != 20 or not isinstance(entry, dict):
            continue  # one bad entry spoils nothing else
        stats[info_hash] = ScrapeStats(
            complete=_optional_count(entry, b"complete") or 0,
            downloaded=_optional_count(entry, b"downloaded") or 0,
            incomplete=_optional_count(entry, b"incomplete") or 0,
        )
    flags = data.get(b"flags")
    interval = _optional_count(flags, b"min_request_interval") if isinstance(flags, dict) else None
    return ScrapeResponse(files=stats, min_request_interval=interval)


# ---- HTTP/1.1 responses ------------------------------------------------------

class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()
"""``HttpResponseParser.feed`` wants more bytes (a sentinel, not an exception)."""

# RFC 9110 §15.4: the redirects a GET follows.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]  # names lower-cased, order kept
    body: bytes  # de-chunked and decompressed

    def header(self, name: str) -> str | None:
        """The last value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        for key, value in reversed(self.headers):
            if key == name:
                return value
        return None

    @property
    def is_redirect(self) -> bool:
        return self.status in REDIRECT_STATUSES

    @property
    def location(self) -> str | None:
        return self.header("location")


_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: ([^\r\n]*))?\Z")
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\Z")
_DIGITS = re.compile(r"[0-9]{1,19}\Z")
_MAX_CHUNK_LINE = 1024

# Parser states.
_HEAD, _LENGTH, _CHUNK_SIZE_LINE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


class HttpResponseParser:
    """One HTTP/1.x response to a GET, fed in pieces of any size.

    ``feed(data)`` returns ``NEED_DATA`` or the finished ``HttpResponse``;
    ``feed_eof()`` says the server closed (it ends a read-until-close body, and
    is an error anywhere else). Caps: ``max_header_size`` on the status line
    plus headers, ``max_body_size`` on the body as sent and again after
    decompression. After an error the parser stays dead.
    """

    def __init__(self, *, max_header_size: int = DEFAULT_LIMITS.tracker_max_header,
                 max_body_size: int = DEFAULT_LIMITS.tracker_max_response) -> None:
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size
        self._buf = bytearray()
        self._state = _HEAD
        self._status = 0
        self._reason = ""
        self._headers: tuple[tuple[str, str], ...] = ()
        self._body = bytearray()
        self._remaining = 0
        self._trailer_bytes = 0
        self._result: HttpResponse | None = None
        self._error: TrackerResponseError | None = None

    # -- public ---------------------------------------------------------------

    def feed(self, data: bytes) -> HttpResponse | _NeedData:
        if self._error is not None:
            raise self._error
        if self._result is not None:
            return self._result  # bytes after a complete response are ignored (Connection: close)
        self._buf += data
        try:
            return self._run()
        except TrackerResponseError as exc:
            self._error = exc
            raise

    def feed_eof(self) -> HttpResponse:
        if self._error is not None:
            raise self._error
        if self._result is not None:
            return self._result
        if self._state == _UNTIL_CLOSE:
            self._state = _DONE
            return self._finish()
        if self._state == _HEAD:
            what = "before sending a response" if not self._buf else "in the middle of the headers"
        elif self._state == _LENGTH:
            what = f"after {len(self._body)} of {len(self._body) + self._remaining} body bytes"
        else:
            what = "in the middle of a chunked body"
        self._error = TrackerResponseError(f"connection closed {what}")
        raise self._error

    # -- internals ------------------------------------------------------------

    def _fail(self, reason: str) -> TrackerResponseError:  # one place to build remote errors
        return TrackerResponseError(reason)

    def _run(self) -> HttpResponse | _NeedData:
        while True:
            state = self._state
            if state == _HEAD:
                if not self._parse_head():
                    return NEED_DATA
            elif state == _LENGTH:
                if not self._take_remaining():
                    return NEED_DATA
                self._state = _DONE
            elif state == _UNTIL_CLOSE:
                self._add_body(self._buf)
                self._buf.clear()
                return NEED_DATA
            elif state == _CHUNK_SIZE_LINE:
                line = self._line(_MAX_CHUNK_LINE, "chunk size line")
                if line is None:
                    return NEED_DATA
                m = _CHUNK_SIZE.match(line)
                if m is None:
                    raise self._fail(f"bad chunk size line {display_text(line.decode('latin-1'), limit=40)!r}")
                size = int(m.group(1), 16)
                if len(self._body) + size > self.max_body_size:
                    raise self._too_big()
                self._remaining = size
                self._state = _CHUNK_DATA if size else _TRAILERS
            elif state == _CHUNK_DATA:
                if not self._take_remaining():
                    return NEED_DATA
                self._state = _CHUNK_END
            elif state == _CHUNK_END:
                line = self._line(2, "end of chunk")
                if line is None:
                    return NEED_DATA
                if line:
                    raise self._fail("chunk data is longer than its size line says")
                self._state = _CHUNK_SIZE_LINE
            elif state == _TRAILERS:
                line = self._line(self.max_header_size, "trailer")
                if line is None:
                    return NEED_DATA
                self._trailer_bytes += len(line) + 2
                if self._trailer_bytes > self.max_header_size:
                    raise self._fail(f"trailers larger than {self.max_header_size} bytes")
                if not line:
                    self._state = _DONE
            else:  # _DONE
                return self._finish()

    def _take_remaining(self) -> bool:
        """Move up to ``_remaining`` buffered bytes into the body; True when done."""
        take = min(self._remaining, len(self._buf))
        self._body += self._buf[:take]
        del self._buf[:take]
        self._remaining -= take
        return not self._remaining

    def _line(self, cap: int, what: str) -> bytes | None:
        """One CRLF- (or LF-) terminated line without its terminator, or None if incomplete."""
        end = self._buf.find(b"\n")
        if end < 0:
            if len(self._buf) > cap + 1:
                raise self._fail(f"{what} longer than {cap} bytes")
            return None
        if end > cap + 1:
            raise self._fail(f"{what} longer than {cap} bytes")
        line = bytes(self._buf[:end])
        del self._buf[: end + 1]
        return line[:-1] if line.endswith(b"\r") else line

    def _too_big(self) -> TrackerResponseError:
        return self._fail(f"response body larger than {self.max_body_size} bytes")

    def _add_body(self, data: bytes | bytearray) -> None:
        if len(self._body) + len(data) > self.max_body_size:
            raise self._too_big()
        self._body += data

    def _parse_head(self) -> bool:
        m = _HEADER_END.search(self._buf)
        if m is None:
            if len(self._buf) > self.max_header_size:
                raise self._fail(f"response headers larger than {self.max_header_size} bytes")
            if self._buf and not b"HTTP/".startswith(bytes(self._buf[:5])):
                raise self._fail(self._not_http())
            return False
        if m.end() > self.max_header_size:
            raise self._fail(f"response headers larger than {self.max_header_size} bytes")
        head = bytes(self._buf[: m.start()])
        del self._buf[: m.end()]
        lines = head.replace(b"\r\n", b"\n").split(b"\n")
        sm = _STATUS_LINE.match(lines[0])
        if sm is None:
            raise self._fail(self._not_http(lines[0]))
        status = int(sm.group(1))
        reason = display_text((sm.group(2) or b"").decode("latin-1"), limit=80)

        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line[:1] in (b" ", b"\t") and headers:  # obsolete line folding
                name, value = headers[-1]
                headers[-1] = (name, f"{value} {line.strip().decode('latin-1')}")
                continue
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN.match(name):
                raise self._fail(f"malformed header line {display_text(line.decode('latin-1'), limit=40)!r}")
            headers.append((name.decode("ascii").lower(), value.strip(b" \t").decode("latin-1")))

        if 100 <= status < 200:  # interim response (e.g. 100 Continue): the real one follows
            return True
        self._status, self._reason, self._headers = status, reason, tuple(headers)
        self._choose_framing()
        return True

    def _not_http(self, first: bytes | bytearray | None = None) -> str:
        first = self._buf[:40] if first is None else first[:40]
        return f"not an HTTP response (starts {display_text(bytes(first).decode('latin-1'), limit=40)!r})"

    def _values(self, name: str) -> list[str]:
        return [v for k, v in self._headers if k == name]

    def _choose_framing(self) -> None:
        if self._status in (204, 304):
            self._state = _DONE
            return
        te = [c.strip().lower() for v in self._values("transfer-encoding") for c in v.split(",") if c.strip()]
        if te:
            if te[-1] != "chunked" or any(c not in ("chunked", "identity") for c in te):
                raise self._fail(f"unsupported Transfer-Encoding {', '.join(te)!r}")
            self._state = _CHUNK_SIZE_LINE
            return
        # RFC 9110 §8.6: repeated or comma-separated values must all agree.
        lengths = {part.strip() for value in self._values("content-length") for part in value.split(",")}
        if lengths:
            if len(lengths) != 1 or not _DIGITS.match(next(iter(lengths))):
                raise self._fail(f"bad Content-Length {', '.join(sorted(lengths))!r}")
            length = int(next(iter(lengths)))
            if length > self.max_body_size:
                raise self._too_big()
            self._remaining = length
            self._state = _LENGTH
            return
        self._state = _UNTIL_CLOSE

    def _finish(self) -> HttpResponse:
        body = self._decompress(bytes(self._body))
        self._result = HttpResponse(self._status, self._reason, self._headers, body)
        self._buf.clear()
        self._body = bytearray()
        return self._result

    def _decompress(self, body: bytes) -> bytes:
        codings = [c.strip().lower() for v in self._values("content-encoding") for c in v.split(",") if c.strip()]
        for coding in reversed(codings):  # applied in order, so undone in reverse
            if coding == "identity":
                continue
            if coding in ("gzip", "x-gzip"):
                body = self._inflate(body, zlib.MAX_WBITS | 16, "gzip")
            elif coding == "deflate":
                # RFC 9110 means zlib-wrapped; some servers send raw deflate.
                try:
                    body = self._inflate(body, zlib.MAX_WBITS, "deflate")
                except TrackerResponseError:
                    body = self._inflate(body, -zlib.MAX_WBITS, "deflate")
            else:
                raise self._fail(f"unsupported Content-Encoding {coding!r}")
        return body

    def _inflate(self, data: bytes, wbits: int, name: str) -> bytes:
        """Decompress, never producing more than ``max_body_size`` bytes (a zip bomb stops here)."""
        cap = self.max_body_size
        out = bytearray()
        while True:
            d = zlib.decompressobj(wbits)
            try:
                out += d.decompress(data, cap + 1 - len(out))
            except zlib.error as exc:
                raise self._fail(f"{name} body is corrupt ({exc})") from None
            if len(out) > cap:
                raise self._fail(f"decompressed body larger than {cap} bytes")
            if not d.eof:
                if d.unconsumed_tail:  # stopped by the cap only when output is full, handled above
                    raise self._fail(f"decompressed body larger than {cap} bytes")
                raise self._fail(f"{name} body is truncated")
            data = d.unused_data
            if wbits != zlib.MAX_WBITS | 16 or not data.strip(b"\0"):
                return bytes(out)  # gzip may hold several members; trailing zero padding is allowed
