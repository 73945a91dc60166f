"""The engine's public values: immutable, and JSON-able for front ends."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

import pytest

from torrent.session import api
from torrent.session.api import (
    BlockDetail,
    Event,
    FileSnapshot,
    PeerBanned,
    PeerSnapshot,
    PieceDetail,
    PieceMap,
    SessionSnapshot,
    StateChanged,
    TorrentAdded,
    TorrentSnapshot,
    TrackerSnapshot,
    format_address,
    to_jsonable,
)

SNAPSHOTS = (SessionSnapshot, TorrentSnapshot, PeerSnapshot, FileSnapshot, TrackerSnapshot, PieceMap, BlockDetail,
             PieceDetail)
# The module's event classes (not Event.__subclasses__(): slots=True leaves the pre-slots classes there too).
EVENTS = tuple(v for v in vars(api).values() if isinstance(v, type) and issubclass(v, Event) and v is not Event)


def value_for(tp: Any) -> Any:
    """A sample value of a field's type, so every field of every class is exercised."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        return value_for(next(a for a in typing.get_args(tp) if a is not type(None)))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return (value_for(args[0]), value_for(args[0]))
        return tuple(value_for(a) for a in args)
    if dataclasses.is_dataclass(tp) or hasattr(tp, "_fields"):
        return sample(tp)
    return {str: "x\u00e9", int: 7, float: 2.5, bool: True, bytes: b"\x00\x01\xff"}[tp]


def field_names(cls: type) -> list[str]:
    """Snapshot rows are named tuples, events frozen dataclasses."""
    if hasattr(cls, "_fields"):
        return list(cls._fields)
    return [f.name for f in dataclasses.fields(cls)]


def sample(cls: type) -> Any:
    hints = typing.get_type_hints(cls, vars(api))
    return cls(**{name: value_for(hints[name]) for name in field_names(cls)})


def test_every_event_class_has_a_kind_and_kinds_are_distinct() -> None:
    assert len(EVENTS) == 8
    kinds = [sample(cls).kind for cls in EVENTS]
    assert all(isinstance(k, str) and k for k in kinds)
    assert len(set(kinds)) == len(kinds)


@pytest.mark.parametrize("cls", SNAPSHOTS + EVENTS, ids=lambda c: c.__name__)
def test_values_are_frozen_and_slotted(cls: type) -> None:
    value = sample(cls)
    first = field_names(cls)[0]
    with pytest.raises((dataclasses.FrozenInstanceError, AttributeError)):
        setattr(value, first, getattr(value, first))
    with pytest.raises((dataclasses.FrozenInstanceError, AttributeError, TypeError)):
        value.not_a_field = 1
    assert not hasattr(value, "__dict__")


@pytest.mark.parametrize("cls", SNAPSHOTS + EVENTS, ids=lambda c: c.__name__)
def test_to_jsonable_gives_json_types_for_every_field(cls: type) -> None:
    value = sample(cls)
    out = to_jsonable(value)
    text = json.dumps(out, allow_nan=False)
    assert json.loads(text) == out  # nothing json would change on the way back
    names = set(field_names(cls))
    assert set(out) == (names | {"kind"} if issubclass(cls, Event) else names)
    if issubclass(cls, Event):
        assert out["kind"] == value.kind


def test_to_jsonable_converts_bytes_tuples_and_nested_values() -> None:
    block = BlockDetail(0, 16384, "requested", ("10.0.0.1:6881", "[::1]:7000"), None)
    piece = PieceDetail(3, 2, 5, (block,), ("10.0.0.1:6881",))
    assert to_jsonable(piece) == {
        "index": 3, "state": 2, "availability": 5,
        "blocks": [{"begin": 0, "length": 16384, "state": "requested",
                    "requested_from": ["10.0.0.1:6881", "[::1]:7000"], "received_from": None}],
        "peers_with_piece": ["10.0.0.1:6881"]}
    assert to_jsonable(PieceMap(3, bytes([0, 1, 255]), b"\x02\x00\x07")) == {
        "num_pieces": 3, "states": [0, 1, 255], "availability": [2, 0, 7]}


def test_to_jsonable_of_events_carries_their_kind() -> None:
    events = (TorrentAdded("a" * 40, 1.5, "name"), StateChanged(None, 2.0, "queued", "downloading"),
              PeerBanned("a" * 40, 3.0, "[::1]:1", "sent corrupt data"))
    out = to_jsonable(events)
    assert [e["kind"] for e in out] == ["torrent added", "state changed", "peer banned"]
    assert out[1] == {"torrent_id": None, "at": 2.0, "old": "queued", "new": "downloading", "reason": None,
                      "kind": "state changed"}
    json.dumps(out)


def test_to_jsonable_passes_plain_values_through() -> None:
    assert to_jsonable(None) is None
    assert to_jsonable("x") == "x"
    assert to_jsonable([1, (2, 3)]) == [1, [2, 3]]


@pytest.mark.parametrize(("host", "port", "expected"), [
    ("10.0.0.1", 6881, "10.0.0.1:6881"),
    ("127.0.0.1", 0, "127.0.0.1:0"),
    ("::1", 51413, "[::1]:51413"),
    ("2001:db8::5", 6881, "[2001:db8::5]:6881"),
    ("::ffff:10.0.0.1", 80, "[::ffff:10.0.0.1]:80"),
    ("tracker.example", 443, "tracker.example:443"),
])
def test_format_address(host: str, port: int, expected: str) -> None:
    assert format_address(host, port) == expected
