"""The speed graph: scale, bucketing and braille drawing, then the widget at several sizes."""

from __future__ import annotations

import math

import pytest
from textual.app import App, ComposeResult

from tui.history import RateHistory, RateSample
from tui.widgets.speed import (
    HOLD,
    SpeedGraph,
    braille_rows,
    bucket,
    dot_heights,
    figures,
    nice_scale,
    rate_text,
    time_axis,
)

KiB, MiB = 1 << 10, 1 << 20
NOW = 1_764_000_000.0
BRAILLE = {chr(c) for c in range(0x2801, 0x2900)}


@pytest.mark.parametrize(("peak", "scale"), [
    (0.0, KiB), (1000.0, KiB), (KiB + 1, 2 * KiB), (3.2 * MiB, 5 * MiB), (600 * KiB, MiB), (500 * KiB, 500 * KiB),
    (11 * MiB, 20 * MiB), (1.5 * (1 << 30), 2 * (1 << 30)),
])
def test_the_scale_is_round_and_above_the_peak(peak: float, scale: float) -> None:
    assert nice_scale(peak) == scale


def test_rates_read_in_binary_units() -> None:
    assert rate_text(5 * MiB) == "5.0 MiB/s"
    assert rate_text(512) == "512 B/s"


def test_bucket_takes_each_slice_s_highest_sample() -> None:
    samples = [RateSample(NOW - 9.5, 10.0, 1.0), RateSample(NOW - 9.2, 30.0, 0.0), RateSample(NOW - 0.5, 5.0, 2.0)]
    downs, ups = bucket(samples, NOW, 10.0, 10)
    assert downs[0] == 30.0 and ups[0] == 1.0
    assert downs[9] == 5.0 and ups[9] == 2.0
    assert downs[1:3] == [30.0, 30.0]  # held: the next tick was late
    assert downs[3:9] == [None] * 6  # a gap longer than HOLD is no data, not a flat line
    assert HOLD < 3


def test_bucket_leaves_the_time_before_the_first_sample_empty() -> None:
    downs, _ = bucket([RateSample(NOW - 1, 7.0, 0.0), RateSample(NOW - 400, 99.0, 0.0)], NOW, 300.0, 300)
    assert downs[:298] == [None] * 298  # the sample older than the window is not drawn
    assert downs[299] == 7.0


def test_dot_heights_show_a_trickle_and_cap_at_the_top() -> None:
    assert dot_heights([None, 0.0, 1.0, 50.0, 100.0, 1000.0], 100.0, 8) == [0, 0, 1, 4, 8, 8]


def test_braille_fills_from_the_axis_outwards() -> None:
    assert braille_rows([4, 0], 2, upward=True) == [" ", "⡇"]  # the left column of the bottom row
    assert braille_rows([8, 8], 2, upward=True) == ["⣿", "⣿"]
    assert braille_rows([5, 2], 2, upward=True) == ["⡀", "⣧"]
    assert braille_rows([1, 0], 2, upward=False) == ["⠁", " "]  # upload hangs from the top
    assert braille_rows([0, 6], 2, upward=False) == ["⢸", "⠘"]


def test_time_axis_labels_minutes_and_ends_at_now() -> None:
    axis = time_axis(100, 300)
    assert len(axis) == 100
    assert axis.startswith("-5m─") and axis.endswith("─now")
    assert all(label in axis for label in ("-4m", "-3m", "-2m", "-1m"))
    assert time_axis(2, 300) == "──"
    narrow = time_axis(20, 300)
    assert narrow.endswith("now") and "-1m" not in narrow  # labels never touch each other


def test_figures_are_current_peak_and_average() -> None:
    down, up = figures([RateSample(NOW - 2, 10.0, 4.0), RateSample(NOW - 1, 30.0, 0.0), RateSample(NOW, 20.0, 2.0)])
    assert down == (20.0, 30.0, 20.0)
    assert up == (2.0, 4.0, 2.0)
    assert figures([]) == ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0))


class GraphApp(App[None]):
    def compose(self) -> ComposeResult:
        yield SpeedGraph()


def busy_history() -> RateHistory:
    history = RateHistory(seconds=300)
    for i in range(300):
        history.add(NOW - 299 + i, 3 * MiB * (1 + math.sin(i / 20)) if i > 40 else 0.0, 400 * KiB * (i % 7 != 0))
    return history


def lines_of(graph: SpeedGraph) -> list[str]:
    return [graph.render_line(y).text for y in range(graph.size.height)]


@pytest.mark.asyncio
async def test_download_above_the_axis_upload_below() -> None:
    app = GraphApp()
    async with app.run_test(size=(100, 30)) as pilot:
        graph = app.query_one(SpeedGraph)
        history = busy_history()
        graph.show(history, NOW)
        await pilot.pause()
        lines = lines_of(graph)
        assert len(lines) == 30 and all(len(line) == 100 for line in lines)
        down, up = figures(history.samples())
        assert lines[0].startswith(f"↓ {rate_text(down.current)}  peak {rate_text(down.peak)}")
        assert lines[-1].startswith(f"↑ {rate_text(up.current)}  peak {rate_text(up.peak)}")
        axis = next(i for i, line in enumerate(lines) if line.rstrip().endswith("now"))
        assert "-5m" in lines[axis]
        assert lines[1].lstrip().startswith(rate_text(nice_scale(down.peak)))  # the scale tops the download half
        assert lines[-2].lstrip().startswith(rate_text(nice_scale(up.peak)))
        assert any(BRAILLE & set(line) for line in lines[1:axis])
        assert any(BRAILLE & set(line) for line in lines[axis + 1:-1])
        # the first 40 seconds had no download: the download half is blank on the left
        label_width = len(rate_text(nice_scale(down.peak))) + 1
        assert all(line[label_width:label_width + 10].strip() == "" for line in lines[1:axis])


@pytest.mark.asyncio
@pytest.mark.parametrize("size", [(40, 6), (80, 12), (200, 20)])
async def test_the_graph_fills_its_size(size: tuple[int, int]) -> None:
    app = GraphApp()
    async with app.run_test(size=size) as pilot:
        graph = app.query_one(SpeedGraph)
        graph.show(busy_history(), NOW)
        await pilot.pause()
        lines = lines_of(graph)
        assert len(lines) == size[1]
        assert all(len(line) == size[0] for line in lines)
        assert "↓" in lines[0]
        assert any("↑" in line for line in lines)
        assert sum(line.rstrip().endswith("now") for line in lines) == 1
        assert sum(bool(BRAILLE & set(line)) for line in lines) >= 2


@pytest.mark.asyncio
async def test_an_empty_history_draws_an_empty_graph() -> None:
    app = GraphApp()
    async with app.run_test(size=(60, 10)) as pilot:
        graph = app.query_one(SpeedGraph)
        graph.show(RateHistory(), NOW)
        await pilot.pause()
        lines = lines_of(graph)
        assert lines[0].startswith("↓ 0 B/s")
        assert not any(BRAILLE & set(line) for line in lines)


@pytest.mark.asyncio
async def test_show_redraws_and_old_samples_scroll_off() -> None:
    app = GraphApp()
    async with app.run_test(size=(60, 10)) as pilot:
        graph = app.query_one(SpeedGraph)
        history = RateHistory(seconds=60)
        history.add(NOW, 2 * MiB, 0.0)
        graph.show(history, NOW)
        await pilot.pause()
        assert lines_of(graph)[0].startswith("↓ 2.0 MiB/s")
        graph.show(history, NOW + 120)  # two minutes later with no new sample: out of the window
        await pilot.pause()
        assert lines_of(graph)[0].startswith("↓ 0 B/s")
        graph.show(history, NOW + 1)
        await pilot.pause()
        assert lines_of(graph)[0].startswith("↓ 2.0 MiB/s")
        graph.show(None, NOW + 2)  # a torrent without a history (HistoryBook.get gave None)
        await pilot.pause()
        lines = lines_of(graph)
        assert lines[0].startswith("↓ 0 B/s")
        assert not any(BRAILLE & set(line) for line in lines)
        assert "-1m" in "".join(lines)  # still the last window shown
