"""Bencode through ``bencode.py``, behind a validating scanner.

``bencode.py`` decodes leniently (a truncated string decodes to its prefix)
and reports no positions, so every input first passes ``scan``: a strict,
iterative pass that enforces the limits in ``Limits``, names the byte where
the data goes wrong, and records the exact span of each top-level dict
value — the info-hash is the SHA-1 of the ``info`` span as it appears in the
file, never of a re-encoding.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import bencodepy

from torrent.core.errors import BencodeError
from torrent.core.settings import DEFAULT_LIMITS, Limits

_INT = re.compile(rb"i(?:0|-?[1-9][0-9]*)e")
_STRLEN = re.compile(rb"(0|[1-9][0-9]{0,18}):")  # 19 digits: lengths fit in 64 bits
_DIGITS = frozenset(b"0123456789")

@functools.cache
def _decoder(max_depth: int) -> bencodepy.Bencode:
    return bencodepy.Bencode(encoding=None, max_depth=max_depth + 1)


def _decode_scanned(data: bytes, limits: Limits) -> Any:
    try:
        return _decoder(limits.bencode_max_depth).decode(bytes(data))
    except bencodepy.BencodeDecodeError as exc:  # scan() accepted it, so this is a disagreement
        raise BencodeError(str(exc)) from exc

Spans = dict[bytes, tuple[int, int]]


def scan(data: bytes, start: int = 0, *, limits: Limits = DEFAULT_LIMITS) -> tuple[int, Spans]:
    """Validate one bencoded value beginning at ``start``.

    Returns the offset just past it and, if it is a dict, the ``(begin, end)``
    span of each of its values. Raises BencodeError naming the bad byte.
    """
    n = len(data)
    if n - start > limits.bencode_max_size:
        raise BencodeError(f"data is {n - start} bytes, more than the limit of {limits.bencode_max_size}")
    max_depth = limits.bencode_max_depth
    max_string = limits.bencode_max_string
    # One frame per open container: [is_dict, items so far, last key, keys seen, begin].
    stack: list[list[Any]] = []
    spans: Spans = {}
    pos = start
    while True:
        if pos >= n:
            raise BencodeError("unexpected end of data", pos)
        begin = pos
        c = data[pos]
        if c == 0x65:  # 'e' closes the innermost container
            if not stack:
                raise BencodeError("unexpected end marker 'e'", pos)
            is_dict, items, key, _, begin = stack.pop()
            if is_dict and items % 2:
                raise BencodeError(f"dict key {key!r} has no value", pos)
            pos += 1
        elif c == 0x6C or c == 0x64:  # 'l' or 'd' opens one
            if stack and stack[-1][0] and stack[-1][1] % 2 == 0:
                raise BencodeError("dict key must be a string", pos)
            if len(stack) >= max_depth:
                raise BencodeError(f"nesting deeper than {max_depth} levels", pos)
            stack.append([c == 0x64, 0, None, set(), pos])
            pos += 1
            continue
        elif c == 0x69:  # 'i'
            if stack and stack[-1][0] and stack[-1][1] % 2 == 0:
                raise BencodeError("dict key must be a string", pos)
            m = _INT.match(data, pos)
            if m is None:
                raise BencodeError("malformed integer", pos)
            pos = m.end()
        elif c in _DIGITS:
            m = _STRLEN.match(data, pos)
            if m is None:
                raise BencodeError("malformed string length", pos)
            length = int(m.group(1))
            if length > max_string:
                raise BencodeError(f"string of {length} bytes exceeds the limit of {max_string}", pos)
            pos = m.end() + length
            if pos > n:
                raise BencodeError(f"string of {length} bytes runs past the end of data", begin)
            if stack and stack[-1][0] and stack[-1][1] % 2 == 0:
                frame = stack[-1]
                key = bytes(data[m.end():pos])
                if key in frame[3]:
                    raise BencodeError(f"duplicate dict key {key!r}", begin)
                frame[3].add(key)
                frame[2] = key
        else:
            raise BencodeError(f"unexpected byte {chr(c)!r}", pos)

        # A whole value [begin, pos) is complete.
        if not stack:
            return pos, spans
        frame = stack[-1]
        if len(stack) == 1 and frame[0] and frame[1] % 2:
            spans[frame[2]] = (begin, pos)
        frame[1] += 1


def decode(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Decode exactly one value filling ``data``; strings and keys stay bytes."""
    end, _ = scan(data, limits=limits)
    if end != len(data):
        raise BencodeError("trailing data after the value", end)
    return _decode_scanned(data, limits)


def decode_with_spans(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> tuple[Any, Spans]:
    """Like ``decode``, plus the raw byte span of each top-level dict value."""
    end, spans = scan(data, limits=limits)
    if end != len(data):
        raise BencodeError("trailing data after the value", end)
    return _decode_scanned(data, limits), spans


def decode_torrent(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> tuple[Any, Spans, int]:
    """Decode a .torrent file: ``decode_with_spans`` plus where the top-level value ends.

    Bytes after a complete top-level *dictionary* are not ours to refuse: some tools
    append a newline or junk to .torrent files and libtorrent loads them, so the caller
    decides what to say about them. After any other value they are an error, as
    everywhere else. Only .torrent files come here; messages from peers, DHT nodes and
    trackers stay strict.
    """
    end, spans = scan(data, limits=limits)
    if end != len(data) and data[0] != 0x64:  # 'd'
        raise BencodeError("trailing data after the value", end)
    return _decode_scanned(data[:end], limits), spans, end


def decode_prefix(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> tuple[Any, int]:
    """Decode the value at the start of ``data`` and return where it ends.

    For messages that append raw bytes after a bencoded header (BEP 9).
    """
    end, _ = scan(data, limits=limits)
    return _decode_scanned(data[:end], limits), end


def encode(obj: Any) -> bytes:
    """Encode with sorted dict keys; str is written as UTF-8.

    The output is scanned once more so that keys which collide after UTF-8
    encoding (``"a"`` and ``b"a"``) fail here, not in a peer's decoder.
    """
    try:
        out = bencodepy.encode(obj)
    except (KeyError, TypeError, ValueError) as exc:  # bencode.py raises KeyError for unknown types
        raise BencodeError(f"cannot encode {type(obj).__name__}: {exc}") from exc
    scan(out, limits=_UNLIMITED)
    return out


# Our own output is trusted for size and depth, only its shape is checked.
_UNLIMITED = Limits(bencode_max_depth=1 << 30, bencode_max_size=1 << 62, bencode_max_string=1 << 62)
