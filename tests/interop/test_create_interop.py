"""Metainfo interoperability: torrents we make load in real clients, and theirs load in ours.

Each real tool is the referee for the facts it computes itself: the v1 info-hash,
the piece geometry, the file list, and (libtorrent's recheck) the piece hashes.
Tools: the libtorrent 2.1 wheel in the venv, Debian's python3-libtorrent 2.0.8,
mktorrent 1.1, and Transmission 3.00's transmission-show / transmission-create.
Nothing is contacted beyond 127.0.0.1 (tracker URLs point at closed local ports).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.interop

TIER1 = ["http://127.0.0.1:1/announce", "http://127.0.0.1:1/backup"]
TIER2 = ["udp://127.0.0.1:2/announce"]
WEB_SEED = "http://127.0.0.1:3/seed/"
MK_TRACKER = "http://127.0.0.1:1/announce"


def regular_files(info: dict[str, Any]) -> list[tuple[str, int]]:
    """(path, length) of the files our JSON lists that are not BEP 47 pad files."""
    return [(f["path"], f["length"]) for f in info["files"] if not f["padding"]]


def padding_files(info: dict[str, Any]) -> list[tuple[str, int]]:
    return [(f["path"], f["length"]) for f in info["files"] if f["padding"]]


def create_ours(tools: Any, payload: Path, out: Path, *extra: str) -> dict[str, Any]:
    """``torrent create`` with two tracker tiers, the private flag and a web seed."""
    tools.cli("create", payload, "-t", ",".join(TIER1), "-t", TIER2[0], "--private",
              "-w", WEB_SEED, "-c", "interop test", "-o", out, "-q", *extra)
    assert out.is_file()
    return tools.info_json(out)


@pytest.fixture(params=["single", "multi"])
def ours(request: pytest.FixtureRequest, tools: Any, tmp_path: Path) -> tuple[Path, Path, dict[str, Any]]:
    """(torrent, payload, our JSON) for a torrent made by ``torrent create``.

    single: one file of 3 MiB + 12,345 bytes, automatic piece size.
    multi: nested directories, an empty file, 64 KiB pieces crossing file boundaries.
    """
    if request.param == "single":
        payload = request.getfixturevalue("single_payload")
        extra: tuple[str, ...] = ()
    else:
        payload = request.getfixturevalue("multi_payload")
        extra = ("--piece-size", "64K")
    torrent = tmp_path / "out" / f"{request.param}.torrent"
    torrent.parent.mkdir()
    info = create_ours(tools, payload, torrent, *extra)
    # What this fixture is for: a short last piece, and (multi) a nested tree with an empty file.
    assert info["total_size"] % info["piece_length"] != 0
    if request.param == "multi":
        assert any(length == 0 for _, length in regular_files(info))
        assert any(path.count("/") >= 3 for path, _ in regular_files(info))
    return torrent, payload, info


# ---- our torrents in their clients ------------------------------------------

def test_libtorrent_reads_our_torrent(tools: Any, ours: tuple[Path, Path, dict[str, Any]]) -> None:
    torrent, payload, info = ours
    ti = tools.lt.torrent_info(str(torrent))

    assert str(ti.info_hashes().v1) == info["info_hash"]
    assert not ti.info_hashes().has_v2()
    assert ti.name() == info["name"] == payload.name
    assert ti.total_size() == info["total_size"] == sum(tools.payload_files(payload).values())
    assert ti.piece_length() == info["piece_length"]
    assert ti.num_pieces() == info["num_pieces"]
    lt_files = tools.lt_files(ti)
    assert not any(pad for _, _, pad in lt_files)
    assert [(path, size) for path, size, _ in lt_files] == regular_files(info)
    assert dict(regular_files(info)) == tools.payload_files(payload)
    assert ti.priv() is True and info["private"] is True
    assert tools.lt_trackers(ti) == [TIER1, TIER2] == info["trackers"]
    assert tools.lt_web_seeds(ti) == [WEB_SEED] == info["web_seeds"]
    assert ti.comment() == info["comment"] == "interop test"


def test_transmission_reads_our_torrent(tools: Any, ours: tuple[Path, Path, dict[str, Any]]) -> None:
    torrent, _, info = ours
    shown = tools.transmission_show(torrent)

    assert shown.info_hash == info["info_hash"]
    assert shown.name == info["name"]
    assert shown.piece_count == info["num_pieces"]
    assert shown.private is True
    assert sorted(shown.files) == sorted(path for path, _ in regular_files(info))
    for url in TIER1 + TIER2 + [WEB_SEED]:
        assert url in shown.output


def test_libtorrent_verifies_our_piece_hashes(tools: Any, ours: tuple[Path, Path, dict[str, Any]]) -> None:
    """libtorrent rechecks the original files against our hashes and seeds them all."""
    torrent, payload, info = ours
    result = tools.lt_recheck(torrent, payload.parent)

    assert result.error == ""
    assert result.num_pieces == info["num_pieces"]
    assert result.have == info["num_pieces"], result
    assert result.is_seeding, result


def test_libtorrent_recheck_catches_one_corrupt_byte(tools: Any, multi_payload: Path, tmp_path: Path) -> None:
    """Control for the test above: the recheck really compares hashes (one bad piece of many)."""
    torrent = tmp_path / "multi.torrent"
    info = create_ours(tools, multi_payload, torrent, "--piece-size", "64K")
    victim = multi_payload / "sub" / "b.bin"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(data)

    result = tools.lt_recheck(torrent, multi_payload.parent)

    assert not result.is_seeding
    assert result.num_pieces == info["num_pieces"]
    assert result.have == info["num_pieces"] - 1, result


DEBIAN_LIBTORRENT_SCRIPT = """
import json, sys
import libtorrent as lt
ti = lt.torrent_info(sys.argv[1])
fs = ti.files()
print(json.dumps({
    "version": lt.__version__,
    "info_hash": str(ti.info_hash()),
    "name": ti.name(),
    "total_size": ti.total_size(),
    "piece_length": ti.piece_length(),
    "num_pieces": ti.num_pieces(),
    "files": [[fs.file_path(i), fs.file_size(i)] for i in range(fs.num_files())],
}))
"""


def test_debian_libtorrent_reads_our_torrent(tools: Any, ours: tuple[Path, Path, dict[str, Any]]) -> None:
    """The other libtorrent on this machine (Debian python3-libtorrent, for /usr/bin/python3)."""
    torrent, _, info = ours
    proc = subprocess.run(["/usr/bin/python3", "-c", DEBIAN_LIBTORRENT_SCRIPT, str(torrent)],
                          capture_output=True, text=True, timeout=60)
    if "No module named 'libtorrent'" in proc.stderr:
        pytest.fail("/usr/bin/python3 cannot import libtorrent: install the Debian package "
                    "'python3-libtorrent' (scripts/test.sh installs it)", pytrace=False)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)

    assert got["info_hash"] == info["info_hash"]
    assert got["name"] == info["name"]
    assert got["total_size"] == info["total_size"]
    assert got["piece_length"] == info["piece_length"]
    assert got["num_pieces"] == info["num_pieces"]
    assert [tuple(f) for f in got["files"]] == regular_files(info)


def test_libtorrent_accepts_our_magnet(tools: Any, ours: tuple[Path, Path, dict[str, Any]]) -> None:
    _, _, info = ours
    params = tools.lt.parse_magnet_uri(info["magnet"])

    assert str(params.info_hashes.v1) == info["info_hash"]
    assert not params.info_hashes.has_v2()
    assert params.name == info["name"]
    assert list(params.trackers) == TIER1 + TIER2
    assert list(params.url_seeds) == [WEB_SEED]


# ---- their torrents in our client --------------------------------------------

@pytest.mark.parametrize("kind", ["single", "multi"])
def test_mktorrent_torrent_loads(tools: Any, kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    payload: Path = request.getfixturevalue(f"{kind}_payload")
    torrent = tmp_path / "mk.torrent"
    tools.run([tools.require("mktorrent"), "-l", "18", "-a", MK_TRACKER, "-o", str(torrent), str(payload)])

    info = tools.info_json(torrent)
    shown = tools.transmission_show(torrent)
    ti = tools.lt.torrent_info(str(torrent))
    total = sum(tools.payload_files(payload).values())

    assert info["info_hash"] == shown.info_hash == str(ti.info_hashes().v1)
    assert info["name"] == shown.name == ti.name() == payload.name
    assert info["total_size"] == ti.total_size() == total
    assert info["piece_length"] == ti.piece_length() == 1 << 18
    assert info["num_pieces"] == ti.num_pieces() == shown.piece_count == -(-total // (1 << 18))
    assert info["hybrid_v2"] is False
    assert padding_files(info) == []
    assert regular_files(info) == [(path, size) for path, size, _ in tools.lt_files(ti)]
    assert dict(regular_files(info)) == tools.payload_files(payload)
    assert info["trackers"] == [[MK_TRACKER]]
    assert info["created_by"].startswith("mktorrent")


@pytest.mark.parametrize("kind", ["single", "multi"])
@pytest.mark.parametrize("version", ["hybrid", "v1-only"])
def test_libtorrent_torrent_loads(tools: Any, kind: str, version: str, request: pytest.FixtureRequest,
                                  tmp_path: Path) -> None:
    payload: Path = request.getfixturevalue(f"{kind}_payload")
    torrent = tmp_path / "lt.torrent"
    torrent.write_bytes(tools.lt_make_torrent(payload, v1_only=version == "v1-only"))

    info = tools.info_json(torrent)
    ti = tools.lt.torrent_info(str(torrent))
    lt_files = tools.lt_files(ti)

    assert info["info_hash"] == str(ti.info_hashes().v1)
    assert ti.info_hashes().has_v2() == (version == "hybrid")
    assert info["hybrid_v2"] is (version == "hybrid")
    assert info["name"] == ti.name() == payload.name
    assert info["piece_length"] == ti.piece_length()
    assert info["num_pieces"] == ti.num_pieces()
    assert info["trackers"] == [[MK_TRACKER]]
    # Pad files are marked as padding, not listed as the payload's files.
    assert regular_files(info) == [(path, size) for path, size, pad in lt_files if not pad]
    assert padding_files(info) == [(path, size) for path, size, pad in lt_files if pad]
    assert dict(regular_files(info)) == tools.payload_files(payload)
    if version == "hybrid" and kind == "multi":
        assert padding_files(info), "libtorrent's hybrid torrent was expected to hold pad files"
    if version == "v1-only":
        assert padding_files(info) == []
        assert tools.transmission_show(torrent).info_hash == info["info_hash"]


@pytest.mark.parametrize("kind", ["single", "multi"])
@pytest.mark.parametrize("version", ["hybrid", "v1-only"])
def test_libtorrent_torrent_total_size_is_the_payload(tools: Any, kind: str, version: str,
                                                      request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """``total_size`` counts the user's bytes: BEP 47 pad files are not part of the payload."""
    payload: Path = request.getfixturevalue(f"{kind}_payload")
    torrent = tmp_path / "lt.torrent"
    torrent.write_bytes(tools.lt_make_torrent(payload, v1_only=version == "v1-only"))

    info = tools.info_json(torrent)

    assert info["total_size"] == sum(tools.payload_files(payload).values())


def test_libtorrent_magnet_loads(tools: Any, multi_payload: Path, tmp_path: Path) -> None:
    """libtorrent's magnet for a hybrid torrent (btih + btmh) reads back with both hashes."""
    torrent = tmp_path / "lt.torrent"
    torrent.write_bytes(tools.lt_make_torrent(multi_payload, v1_only=False))
    ti = tools.lt.torrent_info(str(torrent))

    info = tools.info_json(tools.lt.make_magnet_uri(ti))

    assert info["kind"] == "magnet"
    assert info["info_hash"] == str(ti.info_hashes().v1)
    assert info["info_hash_v2"] == str(ti.info_hashes().v2)
    assert info["name"] == multi_payload.name
    assert info["trackers"] == [[MK_TRACKER]]


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_transmission_create_torrent_loads(tools: Any, kind: str, request: pytest.FixtureRequest,
                                           tmp_path: Path) -> None:
    payload: Path = request.getfixturevalue(f"{kind}_payload")
    torrent = tmp_path / "tc.torrent"
    tools.run([tools.require("transmission-create"), "-o", str(torrent), "-t", MK_TRACKER,
               "-c", "made by transmission", str(payload)])

    info = tools.info_json(torrent)
    shown = tools.transmission_show(torrent)
    ti = tools.lt.torrent_info(str(torrent))

    assert info["info_hash"] == shown.info_hash == str(ti.info_hashes().v1)
    assert info["name"] == shown.name == payload.name
    assert info["num_pieces"] == shown.piece_count == ti.num_pieces()
    assert info["piece_length"] == ti.piece_length()
    # Transmission 3.00 leaves empty files out of the torrent; compare with what it listed.
    assert sorted(path for path, _ in regular_files(info)) == sorted(shown.files)
    nonempty = {path: size for path, size in tools.payload_files(payload).items() if size}
    assert dict(regular_files(info)) == nonempty
    assert info["total_size"] == ti.total_size() == sum(nonempty.values())
    assert info["trackers"] == [[MK_TRACKER]]
    assert info["comment"] == "made by transmission"
