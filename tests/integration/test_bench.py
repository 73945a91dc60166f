"""``torrent bench`` end to end on a tiny payload: every scenario, real
processes (our client and libtorrent), the JSON it prints for scripts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import uvloop

from torrent.bench.many import ManyBench
from torrent.bench.swarm import BenchSwarm
from torrent.codec import metainfo
from torrent.create import create_torrent
from torrent.session import Session
from torrent.session.config import effective_settings

SCENARIOS = {"ours-ours", "lt-ours", "ours-lt", "lt-lt"}


def bench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "torrent", "bench", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False)


def test_smoke_run_of_every_scenario_reports_verified_figures(tmp_path: Path) -> None:
    result = bench("--size", "3M", "--piece-size", "64K", "--runs", "1", "--settle", "0", "--json", "--quiet",
                   "--dir", str(tmp_path / "work"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["settings"]["size"] == 3 * 1024 * 1024
    assert {c["name"] for c in report["ceilings"]} >= {"SHA-1, one core (OpenSSL)", "page-cache write"}
    assert all(c["mb_per_s"] > 0 for c in report["ceilings"])
    scenarios = {s["scenario"]: s for s in report["scenarios"]}
    assert set(scenarios) == SCENARIOS
    for s in scenarios.values():
        (run,) = s["runs"]
        assert run["seconds"] > 0 and run["mb_per_s"] > 0
        assert run["leecher_cpu_s"] > 0 and run["seeder_cpu_s"] >= 0
        assert run["leecher_user_s"] > 0 and run["leecher_sys_s"] >= 0 and run["seeder_user_s"] >= 0
        assert abs(run["leecher_user_s"] + run["leecher_sys_s"] - run["leecher_cpu_s"]) < 0.01
        assert run["leecher_peak_rss_mb"] > 10 and run["seeder_peak_rss_mb"] > 10
        assert s["ratio_to_reference"] > 0
    assert scenarios["lt-lt"]["ratio_to_reference"] == 1.0
    # Each run's download is removed once verified; the payload stays for the next bench.
    work = tmp_path / "work"
    assert (work / "payload" / "bench.bin").stat().st_size == 3 * 1024 * 1024
    assert not list(work.glob("run-*"))


def test_table_for_people(tmp_path: Path) -> None:
    result = bench("--size", "1M", "--piece-size", "16K", "--runs", "2", "--settle", "0", "--scenario", "ours-ours",
                   "--no-ceilings", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("torrent bench: 1.0 MiB payload, 16.0 KiB pieces")
    (row,) = [line for line in lines if line.startswith("ours → ours")]
    assert row.split()[3].isdigit()  # the median MB/s


def test_unknown_scenario_is_a_one_line_error(tmp_path: Path) -> None:
    result = bench("--scenario", "ours-transmission", "--size", "1M", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "torrent: error: unknown scenario 'ours-transmission': choose from ours-ours, lt-ours, ours-lt, lt-lt"]
    assert not list(tmp_path.iterdir())


def test_observed_twins_run_in_the_same_rounds(tmp_path: Path) -> None:
    result = bench("--size", "1M", "--piece-size", "16K", "--runs", "1", "--settle", "0", "--scenario", "ours-ours",
                   "--snapshots", "5", "--no-ceilings", "--json", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [s["scenario"] for s in report["scenarios"]] == ["ours-ours", "ours-ours@5hz"]
    assert report["scenarios"][1]["title"] == "ours → ours (observed 5 Hz)"
    assert all(s["runs"][0]["leecher_user_s"] > 0 for s in report["scenarios"])



@pytest.mark.parametrize(("option", "key", "value"), [
    ("--encryption", "encryption", "RC4 required by every peer"),
    ("--transport=utp", "transport", "utp"),
])
def test_link_options_run_every_pairing_on_that_link_alone(tmp_path: Path, option: str, key: str, value: str) -> None:
    """libtorrent is told pe_forced + pe_rc4 (or TCP off) and ours the same: a pairing with libtorrent
    that completes was RC4 (or uTP), and ours → ours allows nothing else either."""
    result = bench("--size", "2M", "--piece-size", "64K", "--runs", "1", "--settle", "0", option,
                   "--no-ceilings", "--json", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["settings"][key] == value
    assert {s["scenario"] for s in report["scenarios"]} == SCENARIOS
    assert all(s["runs"][0]["mb_per_s"] > 0 for s in report["scenarios"])


@pytest.mark.parametrize(("option", "measured", "ours_against"), [
    ("--seeders=3", "leecher", {"ours-ours": "ours-lt", "lt-ours": "lt-lt"}),
    ("--leechers=3", "seeder", {"ours-ours": "lt-ours", "ours-lt": "lt-lt"}),
])
def test_fan_in_and_fan_out_hold_our_side_against_libtorrent_in_our_place(
        tmp_path: Path, option: str, measured: str, ours_against: dict[str, str]) -> None:
    """Several seeders (or leechers), every pairing: each leecher holds the whole payload, and our side of
    the topology is compared with libtorrent on that side, fed by (or feeding) the same peers."""
    result = bench("--size", "2M", "--piece-size", "32K", "--runs", "1", "--settle", "0", option,
                   "--no-ceilings", "--json", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    scenarios = {s["scenario"]: s for s in report["scenarios"]}
    assert set(scenarios) == SCENARIOS
    leechers = report["settings"]["leechers"]
    for key, s in scenarios.items():
        (run,) = s["runs"]
        # the report rounds MB/s to a tenth, which matters at the few MB/s of a 2 MiB payload
        assert run["mb_per_s"] == pytest.approx(2 * 1024 * 1024 * leechers / run["seconds"] / 1e6, rel=0.01, abs=0.051)
        other = ours_against.get(key)
        if other is None:
            assert s["ratio_to_libtorrent_in_our_place"] is None
        else:
            expected = s["mb_per_s"]["median"] / scenarios[other]["mb_per_s"]["median"]
            assert s["ratio_to_libtorrent_in_our_place"] == pytest.approx(expected, rel=0.02)
    assert report["settings"]["libtorrent"].startswith("libtorrent 2.")
    assert "Python 3." in report["settings"]["libtorrent"]


def test_seeder_upload_cap_holds_for_ours_and_libtorrent(tmp_path: Path) -> None:
    """Two seeders capped at 256 KiB/s each cannot deliver 2 MiB faster than 512 KiB/s (libtorrent's cap
    holds on loopback only because every address is put in its global peer class)."""
    result = bench("--size", "2M", "--piece-size", "32K", "--runs", "1", "--settle", "0", "--seeders", "2",
                   "--seeder-max-up", "256K", "--scenario", "ours-ours", "--scenario", "lt-lt",
                   "--no-ceilings", "--json", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["settings"]["seeder_max_up"] == 256 * 1024
    for s in report["scenarios"]:
        # A burst at the start is allowed for (a second of the cap); never the uncapped hundreds of MB/s.
        assert s["runs"][0]["seconds"] > 2 * 1024 * 1024 / (2 * 256 * 1024) - 1.5, s["scenario"]


@pytest.mark.parametrize("bench_kind", ["downloads", "torrents"])
def test_our_bench_peers_run_no_dht_node_local_discovery_or_port_mapping(tmp_path: Path, bench_kind: str) -> None:
    """Before, the config the bench writes for our peers (``torrent bench`` and ``--torrents N``) only emptied
    ``discovery.dht_bootstrap``: each peer still ran a DHT node, which a bench has no use for. Here a session
    starts from the file written, as our peers do (libtorrent's have DHT, LSD, UPnP and NAT-PMP off in
    lt_peer.LOOPBACK_SETTINGS)."""
    if bench_kind == "downloads":
        (tmp_path / "payload.bin").write_bytes(b"x" * 1000)
        raw = create_torrent(tmp_path / "payload.bin", piece_length=16 * 1024)
        (tmp_path / "bench.torrent").write_bytes(raw)
        BenchSwarm(metainfo.parse(raw), tmp_path / "bench.torrent", tmp_path, tmp_path)
        config = tmp_path / "bench-config.toml"
    else:
        ManyBench(tmp_path, tmp_path, tmp_path, 1, idle_seconds=1.0, settle=0.0, lt_python=None, env={})
        config = tmp_path / "many-config.toml"
    effective = effective_settings(config_file=config, state_dir=tmp_path / "state",
                                   command_line=("network.bind=127.0.0.1", "network.listen_port=0"))
    discovery = effective.settings.discovery
    assert (discovery.dht, discovery.lsd, discovery.port_map) == (False, False, False)

    async def main() -> None:
        session = Session(effective.settings, state_dir=tmp_path / "state")
        await session.start()
        try:
            assert session.dht_port is None and session.lsd is None and session.port_mapper is None
        finally:
            await session.close()

    uvloop.run(main())
