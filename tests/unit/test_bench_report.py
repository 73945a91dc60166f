"""The bench report's arithmetic: which scenario each one is held against, and when runs disagree."""

from __future__ import annotations

from torrent.bench.report import Report, Summary
from torrent.bench.swarm import LIBTORRENT, OURS, RunResult, Scenario

GIB = 1 << 30


def run(mb_per_s: float) -> RunResult:
    return RunResult(seconds=GIB / (mb_per_s * 1e6), bytes=GIB, leecher_user=1.0, leecher_sys=1.0,
                     seeder_user=0.5, seeder_sys=0.5, leecher_rss=50_000_000, seeder_rss=40_000_000)


def report(seeders: int, leechers: int, medians: dict[tuple[str, str], list[float]]) -> Report:
    summaries = tuple(Summary(Scenario(seeder, leecher), tuple(run(m) for m in runs))
                      for (seeder, leecher), runs in medians.items())
    return Report({"seeders": seeders, "leechers": leechers, "size_text": "1 GiB", "piece_size_text": "256 KiB",
                   "runs": 3, "speedups": "compiled", "settle_s": 3}, (), summaries)


MEDIANS = {(OURS, OURS): [300.0], (LIBTORRENT, OURS): [360.0], (OURS, LIBTORRENT): [200.0],
           (LIBTORRENT, LIBTORRENT): [240.0]}


def by_key(r: Report) -> dict[str, dict]:
    return {s["scenario"]: s for s in r.to_dict()["scenarios"]}


def test_fan_in_holds_our_leecher_against_libtorrents_fed_by_the_same_seeders() -> None:
    rows = by_key(report(16, 1, MEDIANS))
    assert rows["ours-ours"]["ratio_to_libtorrent_in_our_place"] == 1.5  # 300 / ours → libtorrent 200
    assert rows["lt-ours"]["ratio_to_libtorrent_in_our_place"] == 1.5  # 360 / libtorrent → libtorrent 240
    assert rows["ours-lt"]["ratio_to_libtorrent_in_our_place"] is None
    assert rows["lt-lt"]["ratio_to_libtorrent_in_our_place"] is None
    assert rows["ours-ours"]["ratio_to_reference"] == 1.25


def test_fan_out_holds_our_seeder_against_libtorrents_feeding_the_same_leechers() -> None:
    r = report(1, 16, MEDIANS)
    rows = by_key(r)
    assert rows["ours-ours"]["ratio_to_libtorrent_in_our_place"] == round(300 / 360, 3)
    assert rows["ours-lt"]["ratio_to_libtorrent_in_our_place"] == round(200 / 240, 3)
    assert rows["lt-ours"]["ratio_to_libtorrent_in_our_place"] is None
    assert "× lt seeder" in r.to_text()


def test_runs_more_than_a_quarter_apart_are_flagged() -> None:
    medians = dict(MEDIANS)
    medians[(OURS, OURS)] = [200.0, 300.0, 260.0]  # 1.5× apart
    medians[(LIBTORRENT, OURS)] = [300.0, 370.0, 360.0]  # 1.23× apart: agree
    r = report(4, 1, medians)
    rows = by_key(r)
    assert rows["ours-ours"]["runs_disagree"] is True
    assert rows["lt-ours"]["runs_disagree"] is False
    text = r.to_text().splitlines()
    (flagged,) = [line for line in text if line.startswith("ours → ours")]
    assert "200–300 !" in flagged
    (calm,) = [line for line in text if line.startswith("libtorrent → ours")]
    assert "!" not in calm
    assert text[-1].startswith("! its runs differ by more than 25%")


def test_no_flag_and_no_footnote_when_runs_agree() -> None:
    text = report(1, 1, MEDIANS).to_text()
    assert "!" not in text
