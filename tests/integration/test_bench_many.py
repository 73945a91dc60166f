"""``torrent bench --torrents N`` end to end on 20 torrents: our session and libtorrent's, real processes,
each started, idle, stopped and restored from what it saved; the JSON it prints for scripts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from torrent.bench.many import Life, ManyRun
from torrent.bench.many_report import ManyReport, ManySummary

COUNT = 20


def bench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "torrent", "bench", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False)


def test_many_torrents_seed_restart_without_hashing_and_report_sane_figures(tmp_path: Path) -> None:
    work = tmp_path / "work"
    result = bench("--torrents", str(COUNT), "--runs", "1", "--idle-seconds", "1", "--settle", "0", "--json",
                   "--quiet", "--dir", str(work), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    settings = report["settings"]
    assert settings["torrents"] == COUNT
    assert COUNT * 64 * 1024 <= settings["payload_bytes"] <= COUNT * 256 * 1024
    clients = {c["client"]: c for c in report["clients"]}
    assert set(clients) == {"ours", "libtorrent"}
    for c in clients.values():
        assert c["torrents"] == COUNT
        (run,) = c["runs"]
        for life in (run["first"], run["restored"]):
            # Each life printed its "seeding N" line only once all N were seeding (the bench checks N).
            assert 0 < life["ready_s"] < 60
            assert 0.9 <= life["idle_window_s"] < 5
            assert life["idle_user_pct"] >= 0 and life["idle_sys_pct"] >= 0
            assert 10 < life["idle_rss_mb"] <= life["peak_rss_mb"] < 1000
            assert life["stop_s"] < 30
        assert c["restore_s"] == run["restored"]["ready_s"]
    ours = clients["ours"]["runs"][0]
    # The first start hashed every byte; the restart trusted its resume data and hashed none.
    assert ours["first"]["hashed_bytes"] == settings["payload_bytes"]
    assert ours["restored"]["hashed_bytes"] == 0 and clients["ours"]["restore_hashed_bytes"] == 0
    assert report["ratio_to_libtorrent"]["restore_s"] > 0
    assert report["ratio_to_libtorrent"]["peak_rss_mb"] > 0
    # The torrents stay for the next bench in that directory; each run's state goes.
    assert len(list((work / "many" / f"torrents-{COUNT}").glob("*.torrent"))) == COUNT
    assert not list(work.glob("many-run-*"))


def test_a_bad_count_is_a_one_line_error(tmp_path: Path) -> None:
    result = bench("--torrents", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["torrent: error: --torrents must be between 1 and 100000"]
    assert not list(tmp_path.iterdir())


def test_table_for_people_gives_medians_and_ours_over_libtorrent() -> None:
    def life(ready: float, cpu: float, rss_mb: int, hashed: int | None) -> Life:
        return Life(ready, hashed, idle_user=cpu, idle_sys=cpu / 2, idle_seconds=10.0, idle_rss=rss_mb * 10**6,
                    peak_rss=(rss_mb + 5) * 10**6, stop_seconds=0.2)

    ours = ManySummary("ours", (ManyRun(life(5.0, 0.1, 70, 10**6), life(3.0, 0.1, 70, 0)),
                                ManyRun(life(6.0, 0.3, 72, 10**6), life(4.0, 0.2, 71, 0)),
                                ManyRun(life(7.0, 0.2, 71, 10**6), life(5.0, 0.3, 72, 0))))
    lt = ManySummary("libtorrent", tuple(ManyRun(life(1.0, 0.01, 40, None), life(0.5, 0.01, 38, None))
                                         for _ in range(3)))
    settings = {"torrents": 1000, "runs": 3, "idle_s": 10.0, "settle_s": 3.0, "payload_text": "154 MiB",
                "piece_size_text": "32.0 KiB", "speedups": "compiled"}
    lines = ManyReport(settings, (ours, lt)).to_text().splitlines()
    assert lines[0].startswith("torrent bench: 1000 idle seeding torrents in one session")
    (row,) = [line.split() for line in lines if line.startswith("ours ") and "÷" not in line]
    # client, first start, restore (median), min–max, re-hashed, idle user %, sys %, after restore %, RSS…
    assert row[:8] == ["ours", "6.00", "4.00", "3.00–5.00", "0.0", "MB", "2.00", "1.00"]
    (ratio,) = [line for line in lines if line.startswith("ours ÷ libtorrent")]
    assert ratio.split()[3:5] == ["6.00", "8.00"]  # first start 6 ÷ 1, restore 4 ÷ 0.5
