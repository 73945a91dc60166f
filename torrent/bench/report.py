"""Bench figures per scenario, as a table for people and a dict for ``--json``.

MB is 10^6 bytes, GiB is 2^30: the units download tools print."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from torrent.bench.ceilings import Ceiling
from torrent.bench.swarm import LIBTORRENT, OURS, REFERENCE, RunResult, Scenario
from torrent.core.units import format_size

GIB = 1 << 30
# CPU figures of a run: totals first, then the split the table shows (user time
# per GiB is the steadier one on this VM; system time follows the host's memory state).
CPU_FIELDS = ("leecher_cpu", "seeder_cpu", "leecher_user", "leecher_sys", "seeder_user", "seeder_sys")
SPREAD_WARNING = 1.25  # runs of one scenario whose fastest is this much faster than its slowest disagree


@dataclass(frozen=True)
class Summary:
    scenario: Scenario
    runs: tuple[RunResult, ...]

    @property
    def median(self) -> float:
        return statistics.median(r.bytes_per_second for r in self.runs)

    @property
    def low(self) -> float:
        return min(r.bytes_per_second for r in self.runs)

    @property
    def high(self) -> float:
        return max(r.bytes_per_second for r in self.runs)

    def per_gib(self, field: str) -> float:
        """Median over the runs of a CPU figure (``leecher_user``, ``seeder_sys``…) per GiB moved."""
        return statistics.median(getattr(r, field) * GIB / r.bytes for r in self.runs)

    @property
    def disagree(self) -> bool:
        """Runs more than 25 % apart: the median alone would hide it."""
        return bool(self.runs) and self.high > self.low * SPREAD_WARNING

    @property
    def leecher_rss(self) -> int:
        return max(r.leecher_rss for r in self.runs)

    @property
    def seeder_rss(self) -> int:
        return max(r.seeder_rss for r in self.runs)


@dataclass(frozen=True)
class Report:
    settings: dict[str, Any]
    ceilings: tuple[Ceiling, ...]
    summaries: tuple[Summary, ...]

    def reference(self) -> Summary | None:
        return next((s for s in self.summaries if s.scenario == REFERENCE and s.runs), None)

    def ratio(self, summary: Summary) -> float | None:
        reference = self.reference()
        return summary.median / reference.median if reference is not None and summary.runs else None

    @property
    def fan_out(self) -> bool:
        """One seeder, several leechers: the seeder is what the topology measures; otherwise the leecher."""
        return self.settings.get("seeders", 1) == 1 and self.settings.get("leechers", 1) > 1

    def counterpart(self, scenario: Scenario) -> Scenario | None:
        """The same topology with libtorrent in our place on the measured side (the leecher in a fan-in,
        the seeder in a fan-out); None where that side is libtorrent's already."""
        if self.fan_out:
            return Scenario(LIBTORRENT, scenario.leecher, scenario.observed) if scenario.seeder == OURS else None
        return Scenario(scenario.seeder, LIBTORRENT, scenario.observed) if scenario.leecher == OURS else None

    def ratio_to_counterpart(self, summary: Summary) -> float | None:
        other = self.counterpart(summary.scenario)
        found = next((s for s in self.summaries if s.scenario == other and s.runs), None)
        return summary.median / found.median if found is not None and summary.runs else None

    def of_ceiling(self, summary: Summary) -> float | None:
        if not self.ceilings or not summary.runs:
            return None
        return summary.median / min(c.bytes_per_second for c in self.ceilings)

    def to_dict(self) -> dict[str, Any]:
        lowest = min(self.ceilings, key=lambda c: c.bytes_per_second) if self.ceilings else None
        return {
            "settings": self.settings,
            "ceilings": [{"name": c.name, "mb_per_s": round(c.bytes_per_second / 1e6, 1)} for c in self.ceilings],
            "lowest_ceiling": lowest.name if lowest else None,
            "scenarios": [self._scenario_dict(s) for s in self.summaries],
        }

    def _scenario_dict(self, s: Summary) -> dict[str, Any]:
        ratio, of_ceiling = self.ratio(s), self.of_ceiling(s)
        return {
            "scenario": s.scenario.key,
            "title": s.scenario.title,
            "mb_per_s": {"median": round(s.median / 1e6, 1), "min": round(s.low / 1e6, 1),
                         "max": round(s.high / 1e6, 1)},
            "ratio_to_reference": _rounded(ratio),
            "ratio_to_libtorrent_in_our_place": _rounded(self.ratio_to_counterpart(s)),
            "runs_disagree": s.disagree,
            "of_lowest_ceiling": _rounded(of_ceiling),
            **{f"{field}_s_per_gib": round(s.per_gib(field), 3) for field in CPU_FIELDS},
            "leecher_peak_rss_mb": round(s.leecher_rss / 1e6, 1),
            "seeder_peak_rss_mb": round(s.seeder_rss / 1e6, 1),
            "runs": [{"seconds": round(r.seconds, 3), "mb_per_s": round(r.bytes_per_second / 1e6, 1),
                      **{f"{field}_s": round(getattr(r, field), 3) for field in CPU_FIELDS},
                      "leecher_peak_rss_mb": round(r.leecher_rss / 1e6, 1),
                      "seeder_peak_rss_mb": round(r.seeder_rss / 1e6, 1)} for r in s.runs],
        }

    def to_text(self) -> str:
        st = self.settings
        title = (f"torrent bench: {st['size_text']} payload, {st['piece_size_text']} pieces, "
                 f"{st['seeders']} seeder(s) → {st['leechers']} leecher(s), {st['runs']} run(s) each, "
                 f"speedups {st['speedups']}, {st['settle_s']:g} s pause before each; "
                 f"over {st.get('transport', 'tcp')}, encryption: {st.get('encryption', 'defaults')}"
                 + (f"; each seeder's upload capped at {format_size(st['seeder_max_up'])}/s"
                    if st.get("seeder_max_up") else "")
                 + (f"; 'observed': our processes build every API snapshot {st['snapshot_hz']:g} times a second"
                    if st.get("snapshot_hz") else ""))
        side = "seeder" if self.fan_out else "leecher"
        lines = [title, "CPU columns: seconds per GiB moved (median of the runs); "
                 f"× lt {side}: against the same topology with libtorrent's {side} in our place"]
        if st.get("libtorrent"):
            lines.append(f"libtorrent peers: {st['libtorrent']}")
        if self.ceilings:
            lowest = min(c.bytes_per_second for c in self.ceilings)
            lines.append("ceilings of this machine, measured in this run:")
            for c in self.ceilings:
                mark = "  ← lowest" if c.bytes_per_second == lowest else ""
                lines.append(f"  {c.name:<30} {c.bytes_per_second / 1e6:8.0f} MB/s{mark}")
        header = ("scenario", "MB/s median", "min–max", "× lt→lt", f"× lt {side}", "of ceiling", "leech user",
                  "leech sys", "seed user", "seed sys", "leech RSS", "seed RSS")
        rows = [header]
        for s in self.summaries:
            ratio, of_ceiling, mine = self.ratio(s), self.of_ceiling(s), self.ratio_to_counterpart(s)
            rows.append((s.scenario.title, f"{s.median / 1e6:.0f}",
                         f"{s.low / 1e6:.0f}–{s.high / 1e6:.0f}" + (" !" if s.disagree else ""),
                         f"{ratio:.2f}" if ratio is not None else "-",
                         f"{mine:.2f}" if mine is not None else "-",
                         f"{of_ceiling:.0%}" if of_ceiling is not None else "-",
                         *(f"{s.per_gib(field):.2f}" for field in CPU_FIELDS[2:]),
                         f"{s.leecher_rss / 1e6:.0f} MB", f"{s.seeder_rss / 1e6:.0f} MB"))
        lines += table_lines(rows)
        if any(s.disagree for s in self.summaries):
            lines.append(f"! its runs differ by more than {SPREAD_WARNING - 1:.0%}: read the range, not the median")
        return "\n".join(lines)


def table_lines(rows: list[tuple[str, ...]]) -> list[str]:
    """A header row, a rule, then the rows: the first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def _rounded(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None
