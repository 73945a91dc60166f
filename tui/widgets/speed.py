"""The rate graph: download above a time axis, upload hanging below it, drawn in braille.

Braille gives each cell 2×4 dots, so a 200-column graph has 400 points across five minutes and a smooth
edge; two halves around one axis let both directions have their own scale (upload is often a tenth of
download) and stay apart without colour (NO_COLOR). It is drawn by hand rather than with plotext because
the whole graph is a few string joins: it costs well under a millisecond once a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, NamedTuple

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

from torrent.core.units import format_size
from tui.history import RateHistory, RateSample

HOLD = 2.5  # seconds a sample stands for when the next one is late (ticks are not exactly 1 s apart)
_UNITS = (1 << 10, 1 << 20, 1 << 30, 1 << 40)
_MANTISSAS = (1, 2, 5, 10, 20, 50, 100, 200, 500)
# braille dot bits, filled from the axis outwards: up from the bottom row of dots, down from the top one
_LEFT_UP, _RIGHT_UP = (0x40, 0x04, 0x02, 0x01), (0x80, 0x20, 0x10, 0x08)
_LEFT_DOWN, _RIGHT_DOWN = (0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80)
_AXIS_STEPS = (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)  # seconds between time labels: at most 6
_LABEL_SPACING = 8  # columns from one time label to the next, at least


def _cells(left_bits: Sequence[int], right_bits: Sequence[int]) -> tuple[tuple[str, ...], ...]:
    """[left dots][right dots] → the braille character with that many dots filled on each side."""
    return tuple(tuple(chr(0x2800 + sum(left_bits[:a]) + sum(right_bits[:b])) if a or b else " "
                       for b in range(5)) for a in range(5))


_UP = _cells(_LEFT_UP, _RIGHT_UP)
_DOWN = _cells(_LEFT_DOWN, _RIGHT_DOWN)


def rate_text(rate: float) -> str:
    return f"{format_size(rate)}/s"


def nice_scale(peak: float) -> float:
    """The top of an axis: the smallest 1, 2 or 5 × 10ⁿ KiB/MiB/GiB/TiB a second at or above ``peak``,
    so the label is round; at least 1 KiB/s, so a nearly idle line is not drawn as full."""
    for unit in _UNITS:
        for mantissa in _MANTISSAS:
            if mantissa * unit >= peak:
                return float(mantissa * unit)
    return float(peak)


def bucket(samples: Sequence[RateSample], now: float, window: float, points: int
           ) -> tuple[list[float | None], list[float | None]]:
    """Download and upload at each of ``points`` even slices of the last ``window`` seconds: the highest
    sample in the slice (as a sparkline does, so a peak is not averaged away), else the previous slice's
    value if its sample is under ``HOLD`` seconds old, else None (no data)."""
    downs: list[float | None] = [None] * points
    ups: list[float | None] = [None] * points
    if points <= 0:
        return downs, ups
    start = now - window
    slice_seconds = window / points
    for at, down, up in samples:
        if at <= start:
            continue
        i = min(int((at - start) / slice_seconds), points - 1)
        previous_down, previous_up = downs[i], ups[i]
        downs[i] = down if previous_down is None else max(previous_down, down)
        ups[i] = up if previous_up is None else max(previous_up, up)
    held = None
    for i in range(points):
        if downs[i] is not None:
            held = i
        elif held is not None and (i - held) * slice_seconds <= HOLD:
            downs[i], ups[i] = downs[held], ups[held]
    return downs, ups


def dot_heights(values: Sequence[float | None], scale: float, dots: int) -> list[int]:
    """Each value as a height in dots; anything above zero gets one dot, so a trickle still shows."""
    return [0 if not value else max(1, min(dots, round(value / scale * dots))) for value in values]


def braille_rows(heights: Sequence[int], rows: int, upward: bool) -> list[str]:
    """Rows of an area chart, top first; ``heights`` has two points a column (left and right dots)."""
    cells = _UP if upward else _DOWN
    clamp = [0] * (4 * rows) + [0, 1, 2, 3, 4] + [4] * (4 * rows)  # clamp[h - 4r + 4 rows]: dots in row r
    lefts, rights = heights[0::2], heights[1::2]
    lines = []
    for row in range(rows):
        offset = 4 * rows - 4 * row
        lines.append("".join([cells[clamp[a + offset]][clamp[b + offset]] for a, b in zip(lefts, rights, strict=True)]))
    return lines[::-1] if upward else lines


def time_axis(width: int, window: float) -> str:
    """A ruler ``width`` wide over the last ``window`` seconds: "-5m───-4m───…───now"."""
    axis = ["─"] * width
    end = width  # where the last label must end
    if width >= 3:
        axis[width - 3:] = "now"
        end = width - 4
    step = next((s for s in _AXIS_STEPS if s >= window / 6 and s * width / window >= _LABEL_SPACING), None)
    taken = -1  # one past the last label placed
    for ago in range(int(window) // step * step, 0, -step) if step else ():
        text = f"-{ago // 60}m" if ago % 60 == 0 else f"-{ago}s"
        x = round((window - ago) * width / window)
        if x > taken and x + len(text) <= end:
            axis[x:x + len(text)] = text
            taken = x + len(text)
    return "".join(axis)


class Figures(NamedTuple):
    current: float
    peak: float
    average: float


def figures(samples: Sequence[RateSample]) -> tuple[Figures, Figures]:
    """Current (the latest sample), peak and average of download and upload over ``samples``."""
    if not samples:
        return Figures(0.0, 0.0, 0.0), Figures(0.0, 0.0, 0.0)
    downs = [s.down for s in samples]
    ups = [s.up for s in samples]
    return (Figures(downs[-1], max(downs), sum(downs) / len(downs)),
            Figures(ups[-1], max(ups), sum(ups) / len(ups)))


class SpeedGraph(Widget):
    """The last minutes of a ``RateHistory`` (a torrent's or the session's) as a graph filling its size.

    ``show`` is called once a refresh; the graph is drawn once per show (or resize, or theme change) and
    repainted from that.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "speed-graph--down", "speed-graph--up", "speed-graph--axis", "speed-graph--label"}
    DEFAULT_CSS = """
    SpeedGraph { height: 1fr; min-height: 4; }
    SpeedGraph > .speed-graph--down { color: $success; }
    SpeedGraph > .speed-graph--up { color: $accent; }
    SpeedGraph > .speed-graph--axis { color: $text-muted; }
    SpeedGraph > .speed-graph--label { color: $text-muted; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._samples: tuple[RateSample, ...] = ()
        self._window = 300.0
        self._now = 0.0
        self._strips: list[Strip] = []
        self._drawn_size: tuple[int, int] | None = None  # the size _strips were drawn for; None: draw again

    def show(self, history: RateHistory | None, now: float) -> None:
        """Graph ``history`` over its whole span, ending at Unix time ``now``; None (a torrent that has not
        moved data lately has no history) draws an empty graph over the last window shown."""
        self._samples = history.samples() if history is not None else ()
        if history is not None:
            self._window = float(history.seconds)
        self._now = now
        self._drawn_size = None
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._drawn_size = None

    def render_line(self, y: int) -> Strip:
        width, height = self.size
        if self._drawn_size != (width, height):
            self._strips = self.draw(width, height)
            self._drawn_size = (width, height)
        return self._strips[y] if y < len(self._strips) else Strip.blank(width, self.rich_style)

    def draw(self, width: int, height: int) -> list[Strip]:
        """The whole graph as ``height`` lines ``width`` cells wide."""
        down_style, up_style, axis_style, label_style = (
            self.get_component_rich_style(f"speed-graph--{name}") for name in ("down", "up", "axis", "label"))
        base = self.rich_style
        samples = [s for s in self._samples if s.at > self._now - self._window]
        down, up = figures(samples)
        figure_lines = 2 if height >= 8 else 1 if height >= 3 else 0
        axis = 1 if height >= 2 else 0
        rows = height - figure_lines - axis
        down_rows, up_rows = (rows + 1) // 2, rows // 2
        scales = nice_scale(down.peak), nice_scale(up.peak)
        labels = rate_text(scales[0]), rate_text(scales[1])
        gutter = max(map(len, labels)) + 1 if width >= 30 else 0
        chart_width = width - gutter
        downs, ups = bucket(samples, self._now, self._window, 2 * chart_width)

        def chart_line(label: str, chart: str, style: Style) -> Strip:
            return Strip([Segment(label.rjust(gutter - 1) + " " if gutter else "", label_style),
                          Segment(chart, style)])

        lines: list[Strip] = []
        if figure_lines == 2:
            lines.append(_figure_line([("↓", down, down_style)], width, label_style))
        elif figure_lines == 1:
            lines.append(_figure_line([("↓", down, down_style), ("↑", up, up_style)], width, label_style))
        for i, chart in enumerate(braille_rows(dot_heights(downs, scales[0], 4 * down_rows), down_rows, True)):
            lines.append(chart_line(labels[0] if i == 0 else "", chart, down_style))
        if axis:
            lines.append(chart_line("", time_axis(chart_width, self._window), axis_style))
        for i, chart in enumerate(braille_rows(dot_heights(ups, scales[1], 4 * up_rows), up_rows, False)):
            lines.append(chart_line(labels[1] if i == up_rows - 1 else "", chart, up_style))
        if figure_lines == 2:
            lines.append(_figure_line([("↑", up, up_style)], width, label_style))
        return [line.adjust_cell_length(width, base) for line in lines]


def _figure_line(directions: Sequence[tuple[str, Figures, Style]], width: int, label_style: Style) -> Strip:
    """"↓ 3.2 MiB/s  peak 4.1 MiB/s  avg 2.9 MiB/s", shortened (average, then peak dropped) to fit ``width``."""
    for detail in (2, 1, 0):
        segments = []
        for arrow, figure, style in directions:
            if segments:
                segments.append(Segment("   ", label_style))
            segments.append(Segment(f"{arrow} {rate_text(figure.current)}", style + Style(bold=True)))
            extra = [f"peak {rate_text(figure.peak)}", f"avg {rate_text(figure.average)}"][:detail]
            if extra:
                segments.append(Segment("  " + "  ".join(extra), label_style))
        strip = Strip(segments)
        if strip.cell_length <= width:
            break
    return strip
