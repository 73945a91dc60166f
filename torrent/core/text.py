"""Text from outside, made safe to show: the one place that escapes it.

Names, comments, tracker URLs and messages, file paths, client names: all of
it comes from a torrent, a magnet link, a tracker or a peer, and any of it may
hold terminal control sequences (ESC ``]0;…`` retitles the window, ESC ``[2J``
clears the screen, a lone CSI byte ``\\x9b`` starts a sequence on some
terminals, ``\\r`` overwrites the line). Every front end passes such text
through ``printable`` before it reaches a terminal; Rich markup is a separate
matter, for the TUI to handle with ``Text`` objects or ``rich.markup.escape``.
JSON output goes through ``printable_json``: ``json.dumps`` escapes only C0.
"""

from __future__ import annotations

import re

# C0 controls (tab and newline included: a value is shown on one line), DEL, C1 controls; the Unicode
# line and paragraph separators; bidirectional embeddings, overrides and isolates, which reorder what
# follows them ("Trojan Source") and so can make a name read as something it is not.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character shown as a visible escape (ESC → ``\\x1b``, U+202E →
    ``\\u202e``); text without any comes back unchanged."""
    if text.isprintable():  # the common case, at C speed; non-ASCII spaces and format characters fall through
        return text
    return _UNSAFE.sub(_escape, text)


# What json.dumps leaves raw with ensure_ascii=False: it escapes only U+0000..U+001F.
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable_json(dumped: str) -> str:
    """JSON text from ``json.dumps(..., ensure_ascii=False)`` with the characters it leaves raw that a
    terminal acts on (DEL, C1 controls such as CSI ``\\x9b``, the bidi controls, line separators) written
    as ``\\u`` escapes of four hex digits; the JSON means the same, and other non-ASCII text stays readable."""
    if dumped.isascii() and "\x7f" not in dumped:  # DEL is ASCII too
        return dumped
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", dumped)
