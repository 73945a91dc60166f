"""Magnet URIs (BEP 9, BEP 19 ``ws``, BEP 52 ``btmh``, BEP 53 ``so``): parse and build.

A magnet link names a swarm by info-hash and carries hints (name, trackers,
peers, web seeds, file selection, size) for fetching the metadata from peers.
Parsing is lenient where links in the wild vary (letter case, base32 hashes,
numbered ``tr.1`` keys, unknown parameters, empty values) and strict where a
mistake would join the wrong swarm or exhaust memory (hash length, two
different hashes, huge ``so=`` ranges). Plain functions only: no I/O.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import reprlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import quote, unquote_plus

from torrent.core.errors import MagnetError
from torrent.core.settings import DEFAULT_LIMITS

MAX_URI_LENGTH = DEFAULT_LIMITS.magnet_max_length
# BEP 53 ranges are expanded into indexes, so "so=0-999999999" must be refused
# before it allocates: no torrent we accept has more files than this.
MAX_SELECTED_FILES = DEFAULT_LIMITS.max_files
# libtorrent and most clients keep a file index in a signed 32-bit int.
_MAX_FILE_INDEX = 2**31 - 1
# xl= is a byte count; every client stores it in a signed 64-bit int.
_MAX_EXACT_LENGTH = 2**63 - 1

# BEP 9: "magnet:?xt=urn:btih:<info-hash>&dn=<name>&tr=<tracker-url>&x.pe=<peer-address>",
# the v1 info-hash as 40 hex or 32 base32 characters; v2 uses "urn:btmh:" with
# a multihash: 0x12 (sha2-256), 0x20 (32-byte digest), then the digest.
_PREFIX = "magnet:?"
_BTIH = "urn:btih:"
_BTMH = "urn:btmh:"
_SHA256_MULTIHASH = "1220"

_HEX40 = re.compile(r"[0-9a-fA-F]{40}")
_BASE32_32 = re.compile(r"[A-Za-z2-7]{32}")
_SHA256_MULTIHASH_HEX = re.compile(_SHA256_MULTIHASH + r"[0-9a-fA-F]{64}")
# "tr.1", "xt.2": numbered keys seen in the wild mean the same as the plain key.
_NUMBERED_KEY = re.compile(r"(.+)\.[0-9]+")
# BEP 53: "so=0,2,4-6", each item an index or an inclusive range.
_SELECTION_ITEM = re.compile(r"([0-9]{1,10})(?:-([0-9]{1,10}))?")
_PORT = re.compile(r"[0-9]{1,5}")
_LENGTH = re.compile(r"[0-9]{1,19}")
_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")

# Error messages quote untrusted input; keep each one line and short.
_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxstring = 80
_SHORT_REPR.maxother = 80

_TEXT = "expected a non-empty string of valid Unicode"

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Magnet:
    """A validated magnet link; ``parse_magnet(m.to_uri()) == m`` for every instance.

    Fields are already canonical (no duplicates, ``select_only`` sorted), so the
    constructor rejects anything ``parse_magnet`` could not give back; use
    ``Magnet.from_info_hash`` to build one from loose values.
    """

    info_hash: bytes | None = None
    info_hash_v2: bytes | None = None
    display_name: str | None = None
    trackers: tuple[str, ...] = ()
    peers: tuple[tuple[str, int], ...] = ()
    web_seeds: tuple[str, ...] = ()
    select_only: tuple[int, ...] | None = None
    exact_length: int | None = None

    def __post_init__(self) -> None:
        if self.info_hash is None and self.info_hash_v2 is None:
            raise MagnetError("a magnet link needs a v1 or v2 info-hash")
        _check_digest("v1 info-hash", self.info_hash, 20)
        _check_digest("v2 info-hash", self.info_hash_v2, 32)
        if self.display_name is not None and not _is_text(self.display_name):
            raise MagnetError(f"invalid display name {_show(self.display_name)}: {_TEXT}")
        _check_items("tracker", self.trackers, _is_text, _TEXT)
        _check_items("web seed", self.web_seeds, _is_text, _TEXT)
        _check_items("peer", self.peers, _is_peer, "expected (host, port 1-65535)")
        if self.select_only is not None:
            _check_selection(self.select_only)
        if self.exact_length is not None and not _is_int_in(self.exact_length, 0, _MAX_EXACT_LENGTH):
            raise MagnetError(f"invalid exact length {_show(self.exact_length)}: expected a byte count")

    @classmethod
    def from_info_hash(
        cls,
        info_hash: bytes | None = None,
        info_hash_v2: bytes | None = None,
        *,
        display_name: str | None = None,
        trackers: Iterable[str] = (),
        peers: Iterable[tuple[str, int]] = (),
        web_seeds: Iterable[str] = (),
        select_only: Iterable[int] | None = None,
        exact_length: int | None = None,
    ) -> Magnet:
        """Build from loose values: drops empty strings and duplicates, sorts the selection."""
        return cls(
            info_hash=info_hash,
            info_hash_v2=info_hash_v2,
            display_name=display_name or None,
            trackers=_unique(t for t in trackers if t),
            peers=_unique(tuple(p) for p in peers),
            web_seeds=_unique(w for w in web_seeds if w),
            select_only=None if select_only is None else tuple(sorted(set(select_only))),
            exact_length=exact_length,
        )

    @property
    def info_hash_hex(self) -> str:
        """Lower-case hex of the v1 hash, or of the v2 hash when there is no v1: the id users see."""
        digest = self.info_hash if self.info_hash is not None else self.info_hash_v2
        assert digest is not None  # __post_init__ guarantees one of them
        return digest.hex()

    def to_uri(self) -> str:
        """The canonical magnet link; see ``build_magnet``."""
        return build_magnet(self)


def parse_magnet(uri: str) -> Magnet:
    """Parse a magnet link; raise ``MagnetError`` saying what to fix if it is not one."""
    if not isinstance(uri, str):
        raise MagnetError(f"a magnet link must be text, not {type(uri).__name__}")
    if len(uri) > MAX_URI_LENGTH:
        raise MagnetError(f"magnet link is {len(uri):,} characters long; the limit is {MAX_URI_LENGTH:,}")
    uri = uri.strip()
    if uri[: len(_PREFIX)].lower() != _PREFIX:
        raise MagnetError(f"not a magnet link: {_show(uri)} does not start with 'magnet:?'")
    if not uri.isascii():
        try:
            uri.encode("utf-8")
        except UnicodeEncodeError:
            raise MagnetError("magnet link contains characters that are not valid Unicode") from None

    v1: bytes | None = None
    v2: bytes | None = None
    display_name: str | None = None
    trackers: list[str] = []
    peers: list[tuple[str, int]] = []
    web_seeds: list[str] = []
    selections: list[str] = []
    exact_length: int | None = None
    for key, value in _parameters(uri[len(_PREFIX) :]):
        if not value:
            continue
        if key == "xt":
            urn = value[: len(_BTIH)].lower()
            if urn == _BTIH:
                v1 = _merge_hash("v1", v1, _decode_btih(value[len(_BTIH) :]))
            elif urn == _BTMH:
                v2 = _merge_hash("v2", v2, _decode_btmh(value[len(_BTMH) :]))
        elif key == "dn":
            display_name = display_name or value
        elif key == "tr":
            trackers.append(value)
        elif key == "ws":
            web_seeds.append(value)
        elif key == "x.pe":
            peers.append(_parse_peer(value))
        elif key == "so":
            selections.append(value)
        elif key == "xl" and exact_length is None:
            exact_length = _parse_length(value)
    if v1 is None and v2 is None:
        raise MagnetError("magnet link has no xt=urn:btih: or urn:btmh: info-hash")
    return Magnet(
        info_hash=v1,
        info_hash_v2=v2,
        display_name=display_name,
        trackers=_unique(trackers),
        peers=_unique(peers),
        web_seeds=_unique(web_seeds),
        select_only=_parse_selection(selections) if selections else None,
        exact_length=exact_length,
    )


def build_magnet(magnet: Magnet) -> str:
    """Canonical link: hashes, dn, tr, ws, x.pe, so, xl in that order, text fully percent-encoded."""
    parts: list[str] = []
    if magnet.info_hash is not None:
        parts.append(f"xt={_BTIH}{magnet.info_hash.hex()}")
    if magnet.info_hash_v2 is not None:
        parts.append(f"xt={_BTMH}{_SHA256_MULTIHASH}{magnet.info_hash_v2.hex()}")
    if magnet.display_name is not None:
        parts.append("dn=" + quote(magnet.display_name, safe=""))
    parts.extend("tr=" + quote(tracker, safe="") for tracker in magnet.trackers)
    parts.extend("ws=" + quote(seed, safe="") for seed in magnet.web_seeds)
    # Brackets and colons stay readable; "%" of an IPv6 zone id is escaped.
    parts.extend("x.pe=" + quote(_format_peer(host, port), safe="[]:") for host, port in magnet.peers)
    if magnet.select_only is not None:
        parts.append("so=" + _format_selection(magnet.select_only))
    if magnet.exact_length is not None:
        parts.append(f"xl={magnet.exact_length}")
    return _PREFIX + "&".join(parts)


def _parameters(query: str) -> Iterator[tuple[str, str]]:
    """Yield (key, value) in order, repeats kept; "+" means space as in form encoding."""
    for part in query.split("&"):
        key, sep, value = part.partition("=")
        if not sep:
            continue
        key = unquote_plus(key).lower()
        numbered = _NUMBERED_KEY.fullmatch(key)
        yield (numbered.group(1) if numbered else key), unquote_plus(value)


def _decode_btih(text: str) -> bytes:
    if _HEX40.fullmatch(text):
        return bytes.fromhex(text)
    if _BASE32_32.fullmatch(text):
        return base64.b32decode(text.upper())
    raise MagnetError(
        f"invalid info-hash {_show(text)} in magnet link: expected 40 hex or 32 base32 characters"
    )


def _decode_btmh(text: str) -> bytes:
    if _SHA256_MULTIHASH_HEX.fullmatch(text):
        return bytes.fromhex(text[len(_SHA256_MULTIHASH) :])
    raise MagnetError(
        f"invalid v2 info-hash {_show(text)} in magnet link: "
        f"expected {_SHA256_MULTIHASH} (sha2-256 multihash) followed by 64 hex characters"
    )


def _merge_hash(version: str, seen: bytes | None, new: bytes) -> bytes:
    """Repeats of one hash are harmless; two different ones name two torrents."""
    if seen is not None and seen != new:
        raise MagnetError(
            f"magnet link has two different {version} info-hashes ({seen.hex()} and {new.hex()}); "
            "it must name one torrent"
        )
    return new


def _parse_peer(text: str) -> tuple[str, int]:
    """BEP 9 x.pe: "hostname:port", "ipv4:port" or "[ipv6]:port"."""
    host, sep, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    if not (sep and bracketed == (":" in host) and _PORT.fullmatch(port) and _valid_peer(host, int(port))):
        raise MagnetError(f"invalid peer address {_show(text)} in x.pe: expected host:port or [ipv6]:port")
    return host, int(port)


def _valid_peer(host: object, port: object) -> bool:
    return isinstance(host, str) and _valid_host(host) and _is_int_in(port, 1, 65535)


def _valid_host(host: str) -> bool:
    """An IPv6 literal (without brackets), an IPv4 literal or a DNS name."""
    try:
        if ":" in host:
            ipaddress.IPv6Address(host)
        elif host and not host.strip("0123456789."):
            ipaddress.IPv4Address(host)
        else:
            return len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in host.split("."))
    except ValueError:
        return False
    return True


def _format_peer(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _parse_selection(values: list[str]) -> tuple[int, ...]:
    """Expand BEP 53 items, counting before expanding so a huge range fails fast."""
    indexes: set[int] = set()
    budget = MAX_SELECTED_FILES
    for value in values:
        for item in value.split(","):
            match = _SELECTION_ITEM.fullmatch(item)
            if match is None:
                raise MagnetError(f"invalid so= selection {_show(item)}: expected file indexes like 0,2,4-6")
            first = int(match.group(1))
            last = int(match.group(2) or first)
            if last < first:
                raise MagnetError(f"invalid so= selection {_show(item)}: a range cannot end before it starts")
            if last > _MAX_FILE_INDEX:
                raise MagnetError(f"invalid so= selection {_show(item)}: file index above {_MAX_FILE_INDEX}")
            budget -= last - first + 1
            if budget < 0:
                raise MagnetError(f"so= selection selects more than {MAX_SELECTED_FILES:,} files")
            indexes.update(range(first, last + 1))
    return tuple(sorted(indexes))


def _format_selection(indexes: tuple[int, ...]) -> str:
    """Compress sorted indexes into BEP 53 runs: (0, 2, 4, 5, 6) -> "0,2,4-6"."""
    runs: list[str] = []
    start = previous = indexes[0]
    for index in indexes[1:] + (-1,):
        if index == previous + 1:
            previous = index
            continue
        runs.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = index
    return ",".join(runs)


def _parse_length(text: str) -> int:
    if _LENGTH.fullmatch(text) and int(text) <= _MAX_EXACT_LENGTH:
        return int(text)
    raise MagnetError(f"invalid xl= length {_show(text)} in magnet link: expected a byte count")


def _check_digest(name: str, value: object, size: int) -> None:
    if value is not None and not (isinstance(value, bytes) and len(value) == size):
        raise MagnetError(f"{name} must be {size} bytes, not {_show(value)}")


def _is_text(value: object) -> bool:
    """Non-empty (an empty value reads back as absent) and encodable as UTF-8 for quoting."""
    if not (isinstance(value, str) and value):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_peer(value: object) -> bool:
    return isinstance(value, tuple) and len(value) == 2 and _valid_peer(*value)


def _check_items(name: str, values: object, valid: Callable[[object], bool], expected: str) -> None:
    """A tuple of valid, distinct items: what ``parse_magnet`` returns."""
    if not isinstance(values, tuple):
        raise MagnetError(f"{name}s must be a tuple, not {type(values).__name__}")
    for value in values:
        if not valid(value):
            raise MagnetError(f"invalid {name} {_show(value)}: {expected}")
    if len(set(values)) != len(values):
        raise MagnetError(f"duplicate {name} in {_show(values)}")


def _check_selection(indexes: object) -> None:
    """The form ``_parse_selection`` returns: non-empty, sorted, unique, in range, capped."""
    if not (
        isinstance(indexes, tuple)
        and 0 < len(indexes) <= MAX_SELECTED_FILES
        and all(_is_int_in(index, 0, _MAX_FILE_INDEX) for index in indexes)
        and all(a < b for a, b in zip(indexes, indexes[1:]))
    ):
        raise MagnetError(
            f"invalid file selection {_show(indexes)}: expected 1 to {MAX_SELECTED_FILES:,} "
            f"sorted, distinct file indexes from 0 to {_MAX_FILE_INDEX}"
        )


def _is_int_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _unique(values: Iterable[_T]) -> tuple[_T, ...]:
    """Drop repeats, keep first-seen order."""
    return tuple(dict.fromkeys(values))


def _show(value: object) -> str:
    return _SHORT_REPR.repr(value)
