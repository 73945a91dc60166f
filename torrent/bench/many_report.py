"""The report of ``torrent bench --torrents N``: a table for people and a dict for ``--json``, in the style
of ``report.py`` (MB is 10^6 bytes), with ours ÷ libtorrent for every figure."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from torrent.bench.many import Life, ManyRun
from torrent.bench.report import table_lines
from torrent.bench.swarm import LIBTORRENT, OURS


@dataclass(frozen=True)
class ManySummary:
    client: str
    runs: tuple[ManyRun, ...]

    def median(self, life: str, field: str) -> float:
        return statistics.median(getattr(getattr(r, life), field) for r in self.runs)

    def span(self, life: str, field: str) -> tuple[float, float]:
        values = [getattr(getattr(r, life), field) for r in self.runs]
        return min(values), max(values)

    def most(self, life: str, field: str) -> int:
        return max(getattr(getattr(r, life), field) for r in self.runs)

    @property
    def restore_hashed(self) -> int | None:
        values = [r.restored.hashed for r in self.runs]
        return None if any(v is None for v in values) else max(values)  # type: ignore[type-var]


# Figures of the table and of ``ratio_to_libtorrent``: (key, life, field, how over the runs).
FIGURES = (("first_start_s", "first", "ready_seconds", "median"),
           ("restore_s", "restored", "ready_seconds", "median"),
           ("idle_user_pct", "first", "user_pct", "median"),
           ("idle_sys_pct", "first", "sys_pct", "median"),
           ("restored_idle_cpu_pct", "restored", "cpu_pct", "median"),
           ("idle_rss_mb", "restored", "idle_rss", "most"),
           ("peak_rss_mb", "restored", "peak_rss", "most"))


@dataclass(frozen=True)
class ManyReport:
    settings: dict[str, Any]
    summaries: tuple[ManySummary, ...]

    def figure(self, summary: ManySummary, key: str) -> float:
        _, life, field, how = next(f for f in FIGURES if f[0] == key)
        value = getattr(summary, how)(life, field)
        return value / 1e6 if key.endswith("_mb") else value

    def ratio(self, key: str) -> float | None:
        """Ours ÷ libtorrent for one figure (None without both, or when libtorrent's is 0)."""
        by_client = {s.client: s for s in self.summaries if s.runs}
        if OURS not in by_client or LIBTORRENT not in by_client:
            return None
        theirs = self.figure(by_client[LIBTORRENT], key)
        return self.figure(by_client[OURS], key) / theirs if theirs else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "clients": [self._client_dict(s) for s in self.summaries],
            "ratio_to_libtorrent": {key: _round(self.ratio(key), 3) for key, *_ in FIGURES},
        }

    def _client_dict(self, s: ManySummary) -> dict[str, Any]:
        low, high = s.span("restored", "ready_seconds")
        return {
            "client": s.client,
            "torrents": self.settings["torrents"],
            **{key: round(self.figure(s, key), 3) for key, *_ in FIGURES},
            "restore_s_min": round(low, 3), "restore_s_max": round(high, 3),
            "restore_hashed_bytes": s.restore_hashed,
            "runs": [{"first": _life_dict(r.first), "restored": _life_dict(r.restored)} for r in s.runs],
        }

    def to_text(self) -> str:
        st = self.settings
        lines = [f"torrent bench: {st['torrents']} idle seeding torrents in one session "
                 f"({st['payload_text']} in all, {st['piece_size_text']} pieces), nothing queued, {st['runs']} "
                 f"run(s) each, speedups {st['speedups']}; idle window {st['idle_s']:g} s after "
                 f"{st['settle_s']:g} s of settling",
                 "CPU: share of one core while idle (median of the runs); RSS: resident while idle and peak, "
                 "of the restored process; targets for 1 000 torrents: under 2 % CPU, under 300 MB, "
                 "restored within 10 s"]
        header = ("client", "first start s", "restore s", "min–max", "re-hashed", "idle user %", "idle sys %",
                  "after restore %", "idle RSS", "peak RSS")
        rows = [header]
        for s in self.summaries:
            low, high = s.span("restored", "ready_seconds")
            hashed = s.restore_hashed
            f = {key: self.figure(s, key) for key, *_ in FIGURES}
            rows.append((s.client, f"{f['first_start_s']:.2f}", f"{f['restore_s']:.2f}", f"{low:.2f}–{high:.2f}",
                         f"{hashed / 1e6:.1f} MB" if hashed is not None else "-",
                         f"{f['idle_user_pct']:.2f}", f"{f['idle_sys_pct']:.2f}", f"{f['restored_idle_cpu_pct']:.2f}",
                         f"{f['idle_rss_mb']:.0f} MB", f"{f['peak_rss_mb']:.0f} MB"))
        ratios = {key: self.ratio(key) for key, *_ in FIGURES}
        if any(r is not None for r in ratios.values()):
            def cell(key: str) -> str:
                r = ratios[key]
                return f"{r:.2f}" if r is not None else "-"

            rows.append(("ours ÷ libtorrent", cell("first_start_s"), cell("restore_s"), "", "",
                         cell("idle_user_pct"), cell("idle_sys_pct"), cell("restored_idle_cpu_pct"),
                         cell("idle_rss_mb"), cell("peak_rss_mb")))
        lines += table_lines(rows)
        return "\n".join(lines)


def _life_dict(life: Life) -> dict[str, Any]:
    return {"ready_s": round(life.ready_seconds, 3), "hashed_bytes": life.hashed,
            "idle_user_pct": round(life.user_pct, 3), "idle_sys_pct": round(life.sys_pct, 3),
            "idle_window_s": round(life.idle_seconds, 3), "idle_rss_mb": round(life.idle_rss / 1e6, 1),
            "peak_rss_mb": round(life.peak_rss / 1e6, 1), "stop_s": round(life.stop_seconds, 3)}


def _round(value: float | None, digits: int) -> float | None:
    return round(value, digits) if value is not None else None
