"""``printable`` and ``printable_json``: the one place where text from outside is made safe for a terminal."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrent.core.text import printable, printable_json

HOSTILE = "\x1b]0;pwned\x07 \x1b[2J\r\x9b[red]x[/red]"


def _unsafe(c: str) -> bool:
    return ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f or c in "\u2028\u2029\u202a\u202b\u202c\u202d\u202e" \
        or "\u2066" <= c <= "\u2069"


def test_escapes_terminal_sequences_visibly() -> None:
    assert printable(HOSTILE) == "\\x1b]0;pwned\\x07 \\x1b[2J\\x0d\\x9b[red]x[/red]"


@pytest.mark.parametrize("text", ["", "debian-13.2.0-amd64-netinst.iso", "Café · 日本語 🎵", "a\u00a0b",
                                  "x\u200dy", "[bold]not markup here[/bold]", "C:\\path"])
def test_leaves_ordinary_text_alone(text: str) -> None:
    assert printable(text) == text


@pytest.mark.parametrize("char,shown", [("\x00", "\\x00"), ("\t", "\\x09"), ("\n", "\\x0a"), ("\x7f", "\\x7f"),
                                        ("\x85", "\\x85"), ("\u2028", "\\u2028"), ("\u202e", "\\u202e"),
                                        ("\u2066", "\\u2066")])
def test_each_control_class(char: str, shown: str) -> None:
    assert printable(f"a{char}b") == f"a{shown}b"


@given(st.text())
def test_no_control_character_survives(text: str) -> None:
    assert not any(_unsafe(c) for c in printable(text))


@given(st.text())
def test_printable_json_is_the_same_json_without_raw_controls(text: str) -> None:
    dumped = printable_json(json.dumps({"name": text}, ensure_ascii=False))
    assert json.loads(dumped) == {"name": text}
    assert not any(_unsafe(c) for c in dumped.replace("\n", ""))  # indent newlines only, none from the text


def test_plain_json_dumps_leaves_c1_controls_raw() -> None:
    """Why printable_json exists: json.dumps escapes C0 but not CSI (U+009B), which xterm obeys."""
    assert "\x9b" in json.dumps("\x9b", ensure_ascii=False)
    assert "\x9b" not in printable_json(json.dumps("\x9b", ensure_ascii=False))


def test_printable_json_escapes_del_in_ascii_text() -> None:
    """Found by the property test: DEL is ASCII, and the all-ASCII shortcut let it through."""
    assert printable_json(json.dumps({"name": "a\x7fb"}, ensure_ascii=False)) == '{"name": "a\\u007fb"}'
