"""IP blocklists as qBittorrent and Transmission read them, sans-IO: bytes in, ranges out.

Two text formats, told apart line by line (files mix them, and names lie about them):

- eMule ``ipfilter.dat``: ``001.009.096.105 - 001.009.096.105 , 000 , Some organization``.
  The access level after the first comma is optional; a range with a level above 127 is *not*
  blocked (eMule's default filter level, and what qBittorrent does). Addresses may be IPv6.
- PeerGuardian ``.p2p``: ``Some organization:1.0.0.0-1.255.255.255``. The description may hold
  colons: the range is what follows the last colon (for an IPv6 range, the first colon after
  which the rest reads as one, as qBittorrent does).

Octets with leading zeros (``001``) are decimal, never octal. Lines starting with ``#`` or ``//``
and blank lines are skipped. The input may be gzip-compressed (told by its magic bytes); it is
decompressed as it comes, never beyond ``max_size`` bytes. A malformed line is a ``Problem``
(its line number and why) and is skipped; only a file with problems and no valid line at all, one
over the size limit, or broken gzip, is refused with ``BlocklistError``.

Speed: a list of 500 000 ranges must load within 2 s. Matched line by line (a call, a match
object and ``int()`` per octet) they took 2.0 s of CPU here; so each chunk of complete lines goes
through one ``findall`` of a pattern that reads the common IPv4 lines whole, and octets become
numbers through a dict (1.1 s with the sort and merge; ``benchmarks/test_blocklist_bench.py``).
Lines the pattern does not read (IPv6, odd spacing, mistakes) are handed whole to ``_careful``,
which parses them one by one and says what is wrong; it reads every line the pattern reads the
same way (a property test holds them to that).
"""

from __future__ import annotations

import ipaddress
import re
import zlib
from dataclasses import dataclass
from typing import NamedTuple

from torrent.core.errors import BlocklistError
from torrent.core.ipfilter import IpFilter, RangeBuilder
from torrent.core.units import format_size

GZIP_MAGIC = b"\x1f\x8b"  # RFC 1952 2.3.1
# eMule: ranges whose access level is above this are allowed, not blocked.
MAX_BLOCKED_LEVEL = 127
# Real lines are a few dozen bytes; the careful path refuses longer ones than this.
MAX_LINE = 4096
V6_TEXT = 45  # the longest IPv6 address text: ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255
MAX_PROBLEMS = 20  # problems kept with their line numbers; the rest are only counted

_OCTET = rb"(\d{1,3})"
_V4 = _OCTET + rb"\." + _OCTET + rb"\." + _OCTET + rb"\." + _OCTET
_SPACE = rb"[ \t\r\f\v]*+"
# One match per line, ending with its newline. Groups: 1, empty, set when the line is p2p
# (``description:`` before the range); 2-9 the octets; 10 the eMule access level; 11 any line that
# is not a comment and not an IPv4 range read here. The p2p prefix is lazy-optional, so an eMule
# line is tried without it first and costs no scan for colons. Runs of blanks are possessive
# (``*+``): a line of 4000 spaces and a stray letter took 24 ms to refuse without.
_LINE = re.compile(
    _SPACE + rb"(?:(?:#|//)[^\n]*"
    + rb"|(?:[^\n]*:()[ \t]*+)??" + _V4 + rb"[ \t]*+-[ \t]*+" + _V4
    + rb"(?(1)|[ \t]*+(?:,[ \t]*+(\d*+)[ \t]*+(?:,[^\n]*)?)?)"
    + rb"|([^\n]+))?" + _SPACE + rb"\n")
_V4_ONLY = re.compile(_V4)
# "0", "00", "000" … "255": every spelling of an octet, leading zeros included, to its value.
_OCTETS = {str(v).zfill(width).encode(): v for v in range(256) for width in range(len(str(v)), 4)}
# The access levels that block, as they are spelt (almost every line has "000" or "0"): a set
# lookup instead of a conversion per line.
_BLOCKED_LEVELS = frozenset([b""] + [text for text, v in _OCTETS.items() if v <= MAX_BLOCKED_LEVEL])


class Problem(NamedTuple):
    line: int  # 1-based, counted in the decompressed text
    reason: str


@dataclass(frozen=True, slots=True)
class Blocklist:
    """What a file gave: the ranges to block, merged, and what was wrong with it."""

    filter: IpFilter
    entries: int  # lines that gave a blocked range, before merging
    allowed: int  # lines skipped for their access level (over 127)
    problems: tuple[Problem, ...]  # the first MAX_PROBLEMS malformed lines
    problem_count: int  # every malformed line


class _Malformed(Exception):
    """One line's fault, with a short reason (never leaves this module)."""


class BlocklistParser:
    """Feed a file's bytes in chunks of any size, then ``finish()`` for the ``Blocklist``;
    ``BlocklistError`` from either when the file cannot be used at all."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._head = b""  # the first bytes, until there are enough to tell gzip
        self._started = False
        self._inflater: zlib._Decompress | None = None
        self._size = 0  # bytes of text so far (after decompression)
        self._partial: list[bytes] = []  # the last line, until its newline comes
        self._line = 0
        self._builder = RangeBuilder()
        self._allowed = 0
        self._problems: list[Problem] = []
        self._problem_count = 0

    def feed(self, data: bytes) -> None:
        if not self._started:
            self._head += data
            if len(self._head) < len(GZIP_MAGIC):
                return
            data, self._head = self._head, b""
            self._started = True
            if data.startswith(GZIP_MAGIC):
                self._inflater = zlib.decompressobj(wbits=31)
        if self._inflater is not None:
            self._inflate(data)
        else:
            self._text(data)

    def finish(self) -> Blocklist:
        if not self._started:
            self._started = True
            self._text(self._head)
        if self._inflater is not None and not self._inflater.eof:
            raise BlocklistError("the gzip stream is truncated")
        if any(self._partial):  # the last line had no newline
            self._lines(b"".join(self._partial) + b"\n")
            self._partial = []
        entries = len(self._builder)
        if not entries and not self._allowed and self._problem_count:
            first = self._problems[0]
            raise BlocklistError(f"no valid line: {self._problem_count} malformed (line {first.line}: "
                                 f"{first.reason})")
        return Blocklist(self._builder.build(), entries, self._allowed, tuple(self._problems), self._problem_count)

    # ---- bytes to lines ----------------------------------------------------------------------

    def _inflate(self, data: bytes) -> None:
        while data:
            inflater = self._inflater
            assert inflater is not None
            if inflater.eof:  # a gzip file may hold several members, one after another (RFC 1952 2.2)
                if not data.startswith(GZIP_MAGIC[: len(data)]):
                    raise BlocklistError("data after the end of the gzip stream")
                inflater = self._inflater = zlib.decompressobj(wbits=31)
            try:
                # At most one byte past the limit: a small file that inflates to gigabytes stops there.
                text = inflater.decompress(data, self.max_size - self._size + 1)
            except zlib.error as exc:
                raise BlocklistError(f"not a valid gzip file ({exc})") from None
            self._text(text)
            data = inflater.unconsumed_tail or inflater.unused_data

    def _text(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self.max_size:
            raise BlocklistError(f"larger than {format_size(self.max_size)} (limits.blocklist_max_size)")
        end = data.rfind(b"\n") + 1
        if not end:
            self._partial.append(data)  # joined once its newline comes: a long line costs no quadratic copying
            return
        self._partial.append(data[:end])
        lines = b"".join(self._partial)
        self._partial = [data[end:]]
        self._lines(lines)

    # ---- lines to ranges ---------------------------------------------------------------------

    def _lines(self, text: bytes) -> None:
        """``text``: whole lines, each ending with a newline."""
        octet, blocked, append = _OCTETS, _BLOCKED_LEVELS, self._builder.v4_keys.append
        number = self._line
        for number, (_, a, b, c, d, e, f, g, h, level, other) in enumerate(_LINE.findall(text), number + 1):
            if a:
                if level not in blocked and _allowed_level(level):  # as qBittorrent: the range is not read
                    self._allowed += 1
                    continue
                try:
                    first = octet[a] << 24 | octet[b] << 16 | octet[c] << 8 | octet[d]
                    last = octet[e] << 24 | octet[f] << 16 | octet[g] << 8 | octet[h]
                except KeyError:  # an octet over 255: _range says which
                    first, last = 1, 0
                if first <= last:
                    append(first << 32 | last)
                    continue
                try:
                    _range(b".".join((a, b, c, d)), b".".join((e, f, g, h)))
                except _Malformed as exc:
                    self._problem(number, str(exc))
            elif other:
                try:
                    found = _careful(other)
                except _Malformed as exc:
                    self._problem(number, str(exc))
                    continue
                if found is None:
                    self._allowed += 1
                else:
                    self._builder.add(*found)
        self._line = number

    def _problem(self, line: int, reason: str) -> None:
        self._problem_count += 1
        if len(self._problems) < MAX_PROBLEMS:
            self._problems.append(Problem(line, reason))


def parse(data: bytes, *, max_size: int) -> Blocklist:
    """A whole file at once (``BlocklistParser`` for one read in chunks)."""
    parser = BlocklistParser(max_size)
    parser.feed(data)
    return parser.finish()


# ---- the careful path ---------------------------------------------------------------------------


def _careful(line: bytes) -> tuple[int, int, int] | None:
    """``(version, first, last)`` of one line, None for an allowed range (eMule level over 127);
    ``_Malformed`` saying what is wrong, in the format the line looks like."""
    line = line.strip()
    if len(line) > MAX_LINE:
        raise _Malformed(f"longer than {MAX_LINE} bytes")
    head, comma, tail = line.partition(b",")
    start_text, dat_dash, end_text = head.partition(b"-")  # IPv4 and IPv6 addresses have no dash
    level = tail.partition(b",")[0].strip() if comma else b""
    if dat_dash and level.isdigit() and _allowed_level(level):
        return None  # as qBittorrent: an allowed range is not even read
    dat_error: _Malformed | None = None
    # eMule's shape: an address before the first dash (an IPv4 one, even with an octet over 255, is
    # what the fast pattern reads as eMule too, and then its fault is eMule's).
    looks_v4 = _V4_ONLY.fullmatch(start_text.strip()) is not None
    if dat_dash and (looks_v4 or _value(start_text) is not None):
        try:
            found = _range(start_text, end_text)
            if level and not level.isdigit():
                raise _Malformed(f"access level {_show(level)} is not a number")
            return found
        except _Malformed as exc:
            dat_error = exc
    before, dash, p2p_end = line.rpartition(b"-")
    if dash and b":" in before:  # PeerGuardian's shape
        try:
            last = _value(p2p_end)
            if last is not None and last[0] == 6:
                return _range(_v6_start(before), p2p_end)
            return _range(before.rpartition(b":")[2], p2p_end)
        except _Malformed:
            if dat_error is None or not looks_v4:
                raise
    if dat_error is not None:
        raise dat_error
    if dat_dash:
        return _range(start_text, end_text)
    raise _Malformed("not a range: expected 'A - B , level , description' or 'description:A-B'")


def _v6_start(before: bytes) -> bytes:
    """The start address of a p2p IPv6 range, ``before`` being the line up to its last dash. The
    description's colons and the address's look alike: as qBittorrent, the first colon after which
    the rest reads as an address. Only the colons of the last V6_TEXT characters (and spaces before
    them) can be that one, so no more are tried: a long line of colons costs no quadratic time."""
    core = before.rstrip()
    low = max(0, len(core) - V6_TEXT - 1)
    earlier = core.rfind(b":", 0, low)
    if earlier >= 0 and not core[earlier + 1:low].strip():
        low = earlier
    colon = core.find(b":", low)
    while colon >= 0 and _value(core[colon + 1:]) is None:
        colon = core.find(b":", colon + 1)
    return core[colon + 1:] if colon >= 0 else core


def _allowed_level(level: bytes) -> bool:
    """An eMule access level (digits) over 127, however long."""
    digits = level.lstrip(b"0")
    return len(digits) > 3 or int(digits or b"0") > MAX_BLOCKED_LEVEL


def _range(start_text: bytes, end_text: bytes) -> tuple[int, int, int]:
    version, first = _address(start_text, "start")
    end_version, last = _address(end_text, "end")
    if version != end_version:
        raise _Malformed("one address is IPv4, the other IPv6")
    if first > last:
        raise _Malformed("the start address is after the end address")
    return version, first, last


def _address(text: bytes, which: str) -> tuple[int, int]:
    found = _value(text)
    if found is not None:
        return found
    text = text.strip()
    match = _V4_ONLY.fullmatch(text)
    if match is not None:
        raise _Malformed(f"{which} address {_show(text)} has an octet over 255")
    raise _Malformed(f"{which} address {_show(text)} is not an IP address")


def _value(text: bytes) -> tuple[int, int] | None:
    """``(version, value)`` of an IPv4 address with decimal octets (``001`` is 1) or an IPv6 one."""
    text = text.strip()
    match = _V4_ONLY.fullmatch(text)
    if match is not None:
        try:
            a, b, c, d = (_OCTETS[o] for o in match.groups())
        except KeyError:
            return None
        return 4, a << 24 | b << 16 | c << 8 | d
    if b":" not in text or not text.isascii():
        return None
    try:
        return 6, int(ipaddress.IPv6Address(text.decode("ascii")))
    except ValueError:
        return None


def _show(text: bytes) -> str:
    """Quoted for a log line: escaped, and short."""
    shown = repr(text[:40])[1:]
    return shown[:-1] + "…'" if len(text) > 40 else shown


__all__ = ["GZIP_MAGIC", "MAX_BLOCKED_LEVEL", "MAX_LINE", "MAX_PROBLEMS", "Blocklist", "BlocklistParser", "Problem",
           "parse"]
