"""Piece geometry: pieces map onto file regions exactly, with empty files and a
short last piece. Expected values are plain arithmetic done in the test."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrent.codec.geometry import BLOCK_SIZE, FileSlice, Geometry

# Files of 10, 0, 25, 0, 5 bytes in pieces of 8: payload 40 bytes, 5 pieces.
# file 0: [0, 10)  file 1: empty at 10  file 2: [10, 35)  file 3: empty at 35  file 4: [35, 40)
G = Geometry(8, (10, 0, 25, 0, 5))


def test_totals() -> None:
    assert G.total_length == 40
    assert G.num_pieces == 5
    assert G.file_offsets == (0, 10, 10, 35, 35)


def test_piece_sizes_with_short_last_piece() -> None:
    g = Geometry(16, (50,))
    assert g.num_pieces == 4
    assert [g.piece_size(i) for i in range(4)] == [16, 16, 16, 2]
    assert g.piece_span(3) == (48, 50)


def test_piece_sizes_exact_multiple() -> None:
    g = Geometry(16, (32, 16))
    assert g.num_pieces == 3
    assert [g.piece_size(i) for i in range(3)] == [16, 16, 16]


def test_single_piece_larger_than_payload() -> None:
    g = Geometry(1 << 20, (3, 4))
    assert g.num_pieces == 1
    assert g.piece_size(0) == 7
    assert g.piece_slices(0) == [FileSlice(0, 0, 3), FileSlice(1, 0, 4)]


@pytest.mark.parametrize("index", [-1, 5, 100])
def test_piece_index_out_of_range(index: int) -> None:
    with pytest.raises(IndexError):
        G.piece_size(index)
    with pytest.raises(IndexError):
        G.piece_span(index)
    with pytest.raises(IndexError):
        G.piece_slices(index)


@pytest.mark.parametrize("piece_length", [0, -16])
def test_non_positive_piece_length(piece_length: int) -> None:
    with pytest.raises(ValueError):
        Geometry(piece_length, (10,))


def test_empty_payload() -> None:
    g = Geometry(16, ())
    assert g.total_length == 0 and g.num_pieces == 0
    assert g.slices(0, 0) == []


def test_spans() -> None:
    assert [G.piece_span(i) for i in range(5)] == [(0, 8), (8, 16), (16, 24), (24, 32), (32, 40)]


def test_piece_slices_skip_empty_files() -> None:
    assert G.piece_slices(0) == [FileSlice(0, 0, 8)]
    assert G.piece_slices(1) == [FileSlice(0, 8, 2), FileSlice(2, 0, 6)]
    assert G.piece_slices(2) == [FileSlice(2, 6, 8)]
    assert G.piece_slices(3) == [FileSlice(2, 14, 8)]
    assert G.piece_slices(4) == [FileSlice(2, 22, 3), FileSlice(4, 0, 5)]


def test_slices_arbitrary_ranges() -> None:
    assert G.slices(9, 3) == [FileSlice(0, 9, 1), FileSlice(2, 0, 2)]
    assert G.slices(10, 25) == [FileSlice(2, 0, 25)]
    assert G.slices(34, 6) == [FileSlice(2, 24, 1), FileSlice(4, 0, 5)]
    assert G.slices(0, 40) == [FileSlice(0, 0, 10), FileSlice(2, 0, 25), FileSlice(4, 0, 5)]
    assert G.slices(5, 0) == []
    assert G.slices(40, 10) == []


def test_slices_with_leading_empty_files() -> None:
    g = Geometry(4, (0, 0, 6))
    assert g.piece_slices(0) == [FileSlice(2, 0, 4)]
    assert g.piece_slices(1) == [FileSlice(2, 4, 2)]


def test_file_pieces() -> None:
    assert G.file_pieces(0) == range(0, 2)  # bytes 0..9 → pieces 0, 1
    assert G.file_pieces(1) == range(0)  # empty
    assert G.file_pieces(2) == range(1, 5)  # bytes 10..34 → pieces 1..4
    assert G.file_pieces(3) == range(0)
    assert G.file_pieces(4) == range(4, 5)  # bytes 35..39


def test_file_pieces_on_piece_boundary() -> None:
    g = Geometry(8, (8, 8))
    assert g.file_pieces(0) == range(0, 1)
    assert g.file_pieces(1) == range(1, 2)


def test_num_blocks() -> None:
    g = Geometry(4 * BLOCK_SIZE, (4 * BLOCK_SIZE + BLOCK_SIZE + 1,))
    assert g.num_blocks(0) == 4
    assert g.num_blocks(1) == 2  # BLOCK_SIZE + 1 bytes


# --- properties -------------------------------------------------------------------------

layouts = st.tuples(
    st.integers(1, 64),
    st.lists(st.integers(0, 200), min_size=1, max_size=12),
)


@given(layouts)
def test_piece_slices_reproduce_every_file_in_order(layout: tuple[int, list[int]]) -> None:
    piece_length, lengths = layout
    g = Geometry(piece_length, tuple(lengths))
    total = sum(lengths)
    assert g.total_length == total
    assert g.num_pieces == -(-total // piece_length)
    assert sum(g.piece_size(i) for i in range(g.num_pieces)) == total

    # Walk every piece's slices: they must tile each file from 0 to its length, in order.
    covered = [0] * len(lengths)
    last_file = -1
    for index in range(g.num_pieces):
        pieces_bytes = 0
        for part in g.piece_slices(index):
            assert part.length > 0
            assert part.file_index >= last_file
            assert part.offset == covered[part.file_index]
            covered[part.file_index] += part.length
            pieces_bytes += part.length
            last_file = part.file_index
        assert pieces_bytes == g.piece_size(index)
    assert covered == lengths


@given(layouts)
def test_file_pieces_are_the_pieces_whose_slices_touch_the_file(layout: tuple[int, list[int]]) -> None:
    piece_length, lengths = layout
    g = Geometry(piece_length, tuple(lengths))
    touched: dict[int, set[int]] = {i: set() for i in range(len(lengths))}
    for index in range(g.num_pieces):
        for part in g.piece_slices(index):
            touched[part.file_index].add(index)
    for i in range(len(lengths)):
        assert set(g.file_pieces(i)) == touched[i]


@given(layouts, st.data())
def test_slices_of_any_range(layout: tuple[int, list[int]], data: st.DataObject) -> None:
    piece_length, lengths = layout
    g = Geometry(piece_length, tuple(lengths))
    total = sum(lengths)
    start = data.draw(st.integers(0, total))
    length = data.draw(st.integers(0, total - start))
    payload = b"".join(bytes([i % 251]) * n for i, n in enumerate(lengths))  # file i filled with byte i
    files = [bytes([i % 251]) * n for i, n in enumerate(lengths)]
    rebuilt = b"".join(files[p.file_index][p.offset:p.offset + p.length] for p in g.slices(start, length))
    assert rebuilt == payload[start:start + length]
