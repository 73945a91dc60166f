"""The torrent list's filter language, compiled once into a predicate and applied as the user types.

Terms are separated by spaces and all must match; ``|`` or ``or`` joins alternatives (AND binds tighter);
``!``, ``not`` or a leading ``-`` negates a term or a group; parentheses group. A term is one of:

    linux                 a bare word: the name contains it (case-insensitive)
    field:value           equal (states, booleans, numbers); contains (text fields)
    field=value  !=       equal, not equal (text: the whole text, case-insensitive)
    field<v  <=  >  >=    compare numbers, sizes, rates and durations
    field~text            contains (case-insensitive); ``field~/regex/`` searches a regular expression
                          (case-insensitive; ``(?-i:…)`` to match case)

States and yes/no values may be cut to a unique prefix (``s:down``, ``private:y``), handy while typing.

Values with spaces, parentheses or ``|`` go in double quotes (``name:"free software"``, ``\\"`` for a quote);
``or`` and ``not`` as names need quotes too. Sizes and rates take binary units (``700M``, ``1.5GiB``,
``500K/s``), progress a percentage (``50`` or ``50%``), durations seconds or units (``90``, ``10m``, ``1h30m``,
``2d``, ``1w``). ``FIELDS`` lists the fields, their aliases and what they take. Examples::

    state:seeding ratio<1 name~linux
    seeds>50 | s:active
    -s:paused (size>4G or path~/movies?/) eta<2h

A malformed expression raises ``FilterError`` naming the problem and its position, so the list keeps its
previous filter while the user is still typing.
"""

from __future__ import annotations

import difflib
import operator
import re
import time
from collections.abc import Callable
from typing import NamedTuple

from torrent.core.errors import TorrentError, UsageError
from torrent.core.units import parse_size
from torrent.session import TorrentSnapshot, TorrentState

Predicate = Callable[[TorrentSnapshot], bool]


class FilterError(TorrentError):
    """The filter text cannot be compiled; ``position`` is the offending index (the message counts from 1)."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.position = position


class Field(NamedTuple):
    name: str
    aliases: tuple[str, ...]
    kind: str  # "text", "state", "bool", "error", "percent", "size", "rate", "number" or "duration"
    help: str
    values: tuple[str, ...] = ()  # the words the value may be, for completion


STATES = (*(s.value for s in TorrentState), "active", "complete", "incomplete")
_BOOLS = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}

FIELDS: tuple[Field, ...] = (
    Field("name", ("n",), "text", "the torrent's name (a bare word searches it too)"),
    Field("state", ("status", "s"), "state", "a state, or active (moving data), complete, incomplete", STATES),
    Field("progress", ("pct", "%"), "percent", "percent of the wanted data verified, 0-100 (50 or 50%)"),
    Field("size", ("total_size",), "size", "total size, binary units (700M, 1.5GiB)"),
    Field("wanted", ("wanted_size",), "size", "size of the selected files"),
    Field("down", ("dl", "downrate"), "rate", "download rate (1M, 500K/s)"),
    Field("up", ("ul", "uprate"), "rate", "upload rate (1M, 500K/s)"),
    Field("ratio", (), "number", "uploaded / downloaded"),
    Field("peers", (), "number", "connected peers"),
    Field("seeds", (), "number", "connected seeds"),
    Field("eta", (), "duration", "time left (90, 10m, 2h, 1d); an unknown ETA never matches"),
    Field("path", ("save_path", "dir"), "text", "the download directory"),
    Field("error", (), "error", "error:yes when it has an error; error~disk searches the message", tuple(_BOOLS)),
    Field("private", (), "bool", "a private torrent (yes/no)", tuple(_BOOLS)),
    Field("sequential", (), "bool", "downloads pieces in order (yes/no)", tuple(_BOOLS)),
    Field("forced", (), "bool", "force-started, ignoring the queue (yes/no)", tuple(_BOOLS)),
    Field("queue", ("queue_position",), "number", "queue position, 0 is the top"),
    Field("age", ("added",), "duration", "time since it was added (30m, 2d)"),
)

_BY_NAME = {alias: f for f in FIELDS for alias in (f.name, *f.aliases)}
_ATTRIBUTE = {"name": "name", "state": "state", "progress": "progress", "size": "total_size",
              "wanted": "wanted_size", "down": "down_rate", "up": "up_rate", "ratio": "ratio", "peers": "peers",
              "seeds": "seeds", "eta": "eta", "path": "save_path", "error": "last_error", "private": "private",
              "sequential": "sequential", "forced": "forced", "queue": "queue_position", "age": "added_at"}
_INDEX = {name: TorrentSnapshot._fields.index(attribute) for name, attribute in _ATTRIBUTE.items()}
_COMPARE = {":": operator.eq, "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
            ">": operator.gt, ">=": operator.ge}
_EQUALITY = (":", "=", "!=")
_MAX_DEPTH = 100  # nested groups and negations; deeper would overflow the stack when compiled or evaluated


def compile_filter(text: str, *, now: Callable[[], float] = time.time) -> Predicate:
    """A predicate over torrents for ``text`` (blank matches everything); ``now`` gives the clock for ``age``."""
    tokens = _tokenize(text)
    if not tokens:
        return _everything
    return _Parser(tokens, now).parse()


def _everything(t: TorrentSnapshot) -> bool:
    return True


# ---- tokens ---------------------------------------------------------------------------------


class _Token(NamedTuple):
    kind: str  # "(", ")", "or", "not" or "term"
    pos: int
    raw: str = ""  # the symbol as typed, for messages
    field: str = ""  # empty for a bare word
    op: str = ""
    value: str = ""
    value_pos: int = 0
    regex: bool = False


_FIELD = re.compile(r"[A-Za-z_%]*")
_OPERATOR = re.compile(r"!=|<=|>=|[:=<>~]")
_KEYWORDS = ("or", "not")


def _tokenize(text: str) -> list[_Token]:
    out: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "()|":
            out.append(_Token("or" if c == "|" else c, i, c))
            i += 1
        elif c in "!-":
            out.append(_Token("not", i, c))
            i += 1
        elif c == '"':
            value, end = _quoted(text, i)
            out.append(_Token("term", i, value=value, value_pos=i))
            i = _term_end(text, end, "the closing quote")
        else:
            token, i = _word(text, i)
            out.append(token)
    return out


def _word(text: str, start: int) -> tuple[_Token, int]:
    """A bare word, a keyword or a ``field<op>value`` term starting at ``start``; and where it ends."""
    name = _FIELD.match(text, start)
    field_end = name.end() if name else start
    op = _OPERATOR.match(text, field_end)
    if op is None:
        end = _word_end(text, start)
        word = text[start:end]
        if word.lower() in _KEYWORDS:
            return _Token(word.lower(), start, word), end
        return _Token("term", start, value=word, value_pos=start), end
    if field_end == start:
        raise FilterError(f"missing field name before {op.group()!r} at position {start + 1}", start)
    field, value_pos = text[start:field_end], op.end()
    if value_pos < len(text) and text[value_pos] == '"':
        value, end = _quoted(text, value_pos)
        return _Token("term", start, field=field, op=op.group(), value=value, value_pos=value_pos), \
            _term_end(text, end, "the closing quote")
    if op.group() == "~" and text.startswith("/", value_pos):
        close = _regex_end(text, value_pos)
        return _Token("term", start, field=field, op="~", value=text[value_pos + 1:close], value_pos=value_pos,
                      regex=True), _term_end(text, close + 1, "the regular expression")
    end = _word_end(text, value_pos)
    if end == value_pos:
        raise FilterError(f"missing value after {text[start:value_pos]!r} at position {value_pos + 1}", value_pos)
    return _Token("term", start, field=field, op=op.group(), value=text[value_pos:end], value_pos=value_pos), end


def _word_end(text: str, i: int) -> int:
    while i < len(text) and not text[i].isspace() and text[i] not in "()|":
        i += 1
    return i


def _quoted(text: str, start: int) -> tuple[str, int]:
    """The text of the quoted string opening at ``start`` (``\\"`` and ``\\\\`` escaped) and the index after it."""
    chars: list[str] = []
    i = start + 1
    while i < len(text):
        c = text[i]
        if c == '"':
            return "".join(chars), i + 1
        if c == "\\" and i + 1 < len(text):
            i += 1
            c = text[i]
        chars.append(c)
        i += 1
    raise FilterError(f"unclosed quote at position {start + 1}", start)


def _regex_end(text: str, start: int) -> int:
    """The index of the ``/`` closing the regular expression opened at ``start`` (``\\/`` does not close it)."""
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == "/":
            return i
        else:
            i += 1
    raise FilterError(f"unclosed regular expression at position {start + 1}: end it with '/'", start)


def _term_end(text: str, i: int, after: str) -> int:
    """``i`` if a term may end there; something glued to a quote or a regex is a mistake worth naming."""
    if i < len(text) and not text[i].isspace() and text[i] not in "()|":
        raise FilterError(f"unexpected {text[i]!r} after {after} at position {i + 1}: put a space between terms", i)
    return i


# ---- grammar --------------------------------------------------------------------------------


class _Parser:
    """Recursive descent: expression := conjunction (or conjunction)*; conjunction := unary unary*;
    unary := not unary | ( expression ) | term."""

    def __init__(self, tokens: list[_Token], now: Callable[[], float]) -> None:
        self.tokens = tokens
        self.i = 0
        self.depth = 0
        self.now = now

    def peek(self) -> str:
        return self.tokens[self.i].kind if self.i < len(self.tokens) else ""

    def parse(self) -> Predicate:
        predicate = self.expression()
        if self.i < len(self.tokens):  # only a ')' stops an expression early
            pos = self.tokens[self.i].pos
            raise FilterError(f"unbalanced ')' at position {pos + 1}: no '(' opens it", pos)
        return predicate

    def expression(self) -> Predicate:
        alternatives = [self.conjunction()]
        while self.peek() == "or":
            token = self.tokens[self.i]
            self.i += 1
            if self.peek() not in ("term", "not", "("):
                raise FilterError(f"{token.raw!r} at position {token.pos + 1} needs a term on each side", token.pos)
            alternatives.append(self.conjunction())
        return _any(alternatives)

    def conjunction(self) -> Predicate:
        terms = [self.unary()]
        while self.peek() in ("term", "not", "("):
            terms.append(self.unary())
        return _all(terms)

    def unary(self) -> Predicate:
        token = self.tokens[self.i]
        self.i += 1
        if token.kind == "term":
            return _term(token, self.now)
        if token.kind == "or":
            raise FilterError(f"{token.raw!r} at position {token.pos + 1} needs a term on each side", token.pos)
        if token.kind == ")":
            raise FilterError(f"unbalanced ')' at position {token.pos + 1}: no '(' opens it", token.pos)
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise FilterError(f"too deeply nested at position {token.pos + 1}", token.pos)
        if token.kind == "not":
            if self.peek() not in ("term", "not", "("):
                raise FilterError(f"{token.raw!r} at position {token.pos + 1} needs a term after it", token.pos)
            predicate = _negate(self.unary())
        else:
            if self.peek() == ")":
                raise FilterError(f"empty parentheses at position {token.pos + 1}", token.pos)
            if self.peek() == "":
                raise FilterError(f"unclosed '(' at position {token.pos + 1}", token.pos)
            predicate = self.expression()
            if self.peek() != ")":
                raise FilterError(f"unclosed '(' at position {token.pos + 1}", token.pos)
            self.i += 1
        self.depth -= 1
        return predicate


def _negate(predicate: Predicate) -> Predicate:
    return lambda t: not predicate(t)


def _all(predicates: list[Predicate]) -> Predicate:
    """A plain loop over the terms: a third of the cost of ``all()`` over a generator, and no nesting."""
    if len(predicates) == 1:
        return predicates[0]
    ps = tuple(predicates)

    def every(t: TorrentSnapshot) -> bool:
        for p in ps:
            if not p(t):
                return False
        return True

    return every


def _any(predicates: list[Predicate]) -> Predicate:
    if len(predicates) == 1:
        return predicates[0]
    ps = tuple(predicates)

    def some(t: TorrentSnapshot) -> bool:
        for p in ps:
            if p(t):
                return True
        return False

    return some


# ---- terms ----------------------------------------------------------------------------------


def _term(token: _Token, now: Callable[[], float]) -> Predicate:
    if not token.field:
        return _text_term(_INDEX["name"], ":", token)
    field = _BY_NAME.get(token.field.lower())
    if field is None:
        raise FilterError(_unknown_field(token.field, token.pos), token.pos)
    index = _INDEX[field.name]
    if field.kind == "text" or (field.kind in ("state", "error") and token.op == "~"):
        return _text_term(index, token.op, token)
    if token.regex:
        raise FilterError(f"{field.name!r} at position {token.pos + 1} is not text: "
                          f"a regular expression needs a text field", token.pos)
    if field.kind in ("state", "bool", "error"):
        if token.op not in _EQUALITY:
            raise FilterError(f"{field.name!r} at position {token.pos + 1} cannot be compared with {token.op!r}: "
                              f"use ':', '=' or '!='", token.pos)
        if field.kind == "state":
            return _state_term(token)
        if field.kind == "bool":
            return _bool_term(index, token)
        has = _BOOLS.get(token.value.lower())
        if has is None:
            return _text_term(index, token.op, token)
        wanted = has if token.op != "!=" else not has
        return lambda t: (t[index] is not None) is wanted
    if token.op == "~":
        raise FilterError(f"{field.name!r} at position {token.pos + 1} is a number: "
                          f"use ':', '=', '!=', '<', '<=', '>' or '>='", token.pos)
    return _number_term(field, index, token, now)


def _unknown_field(name: str, pos: int) -> str:
    close = difflib.get_close_matches(name.lower(), list(_BY_NAME), n=1)
    if close:
        return f"unknown field {name!r} at position {pos + 1}: did you mean {close[0]!r}?"
    return f"unknown field {name!r} at position {pos + 1}: fields are {', '.join(f.name for f in FIELDS)}"


def _text_term(index: int, op: str, token: _Token) -> Predicate:
    """Text compares case-insensitively; a missing text (no error) is the empty string."""
    if token.regex:
        try:
            search = re.compile(token.value, re.IGNORECASE).search
        except (re.error, OverflowError, RecursionError) as exc:
            reason = exc.msg if isinstance(exc, re.error) else str(exc)
            raise FilterError(f"bad regular expression at position {token.value_pos + 1}: {reason}",
                              token.value_pos) from None
        return lambda t: search(t[index] or "") is not None
    needle = token.value.lower()
    if op in (":", "~"):
        return lambda t: needle in (t[index] or "").lower()
    if op == "=":
        return lambda t: (t[index] or "").lower() == needle
    if op == "!=":
        return lambda t: (t[index] or "").lower() != needle
    raise FilterError(f"{token.field!r} at position {token.pos + 1} is text: use ':', '~', '=' or '!=', not {op!r}",
                      token.pos)


def _choose(token: _Token, choices: tuple[str, ...], what: str) -> str:
    """The choice ``token.value`` names, exactly or by a unique prefix (handy while typing)."""
    word = token.value.lower()
    found = [word] if word in choices else [c for c in choices if c.startswith(word)]
    if len(found) != 1:
        raise FilterError(f"unknown {what} {token.value!r} at position {token.value_pos + 1}: "
                          f"use one of {', '.join(choices)}", token.value_pos)
    return found[0]


_STATE, _PROGRESS, _DOWN, _UP = (_INDEX[name] for name in ("state", "progress", "down", "up"))
_DERIVED_STATES: dict[str, Predicate] = {
    "active": lambda t: t[_DOWN] + t[_UP] > 0,
    "complete": lambda t: t[_PROGRESS] >= 1,
    "incomplete": lambda t: t[_PROGRESS] < 1,
}


def _state_term(token: _Token) -> Predicate:
    state = _choose(token, STATES, "state")
    derived = _DERIVED_STATES.get(state)
    if derived is not None:
        return _negate(derived) if token.op == "!=" else derived
    return (lambda t: t[_STATE] != state) if token.op == "!=" else (lambda t: t[_STATE] == state)


def _bool_term(index: int, token: _Token) -> Predicate:
    wanted = _BOOLS[_choose(token, tuple(_BOOLS), "yes/no value")]
    if token.op == "!=":
        wanted = not wanted
    return lambda t: bool(t[index]) is wanted


def _number_term(field: Field, index: int, token: _Token, now: Callable[[], float]) -> Predicate:
    compare = _COMPARE[token.op]
    value = _PARSE[field.kind](token)
    if field.kind == "percent":
        value /= 100  # progress is a fraction; dividing the bound keeps 42% equal to 0.42
    if field.name == "eta":
        return lambda t: (eta := t[index]) is not None and compare(eta, value)
    if field.name == "age":
        return lambda t: compare(now() - t[index], value)
    return lambda t: compare(t[index], value)


_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+", re.ASCII)
_DURATION = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)[smhdw])+", re.ASCII | re.IGNORECASE)
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([smhdw])", re.ASCII | re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _bad(token: _Token, what: str, example: str) -> FilterError:
    return FilterError(f"bad {what} {token.value!r} at position {token.value_pos + 1}: {example}", token.value_pos)


def _parse_number(token: _Token) -> float:
    if not _NUMBER.fullmatch(token.value):
        raise _bad(token, "number", "use digits, e.g. 1.5")
    return float(token.value)


def _parse_percent(token: _Token) -> float:
    text = token.value.removesuffix("%")
    if not _NUMBER.fullmatch(text) or float(text) > 100:
        raise _bad(token, "percentage", "use 0 to 100, e.g. 50 or 50%")
    return float(text)


def _parse_size(token: _Token, text: str | None = None) -> float:
    try:
        return parse_size(token.value if text is None else text)
    except (UsageError, ValueError):
        raise _bad(token, "size", "use bytes or a number with K, M, G or T, e.g. 700M or 1.5GiB") from None


def _parse_rate(token: _Token) -> float:
    value = token.value
    return _parse_size(token, value[:-2] if value.lower().endswith("/s") else value)


def _parse_duration(token: _Token) -> float:
    if _NUMBER.fullmatch(token.value):
        return float(token.value)
    if not _DURATION.fullmatch(token.value):
        raise _bad(token, "duration", "use seconds or units s, m, h, d, w, e.g. 90, 10m or 1h30m")
    return sum(float(n) * _SECONDS[unit.lower()] for n, unit in _DURATION_PART.findall(token.value))


_PARSE: dict[str, Callable[[_Token], float]] = {"number": _parse_number, "percent": _parse_percent,
                                                "size": _parse_size, "rate": _parse_rate,
                                                "duration": _parse_duration}
