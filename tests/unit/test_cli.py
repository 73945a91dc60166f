"""The ``torrent`` command run as a real process: output, files written, exit codes, errors.

Expected values are computed here independently (hashlib over the bytes,
torrents encoded by hand), never read back from the code under test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import torrent
from torrent.codec.bencoding import decode, encode

PIECE = 16 * 1024
TRACKER_A = "http://127.0.0.1:6969/announce"
TRACKER_B = "udp://127.0.0.1:6969/announce"
TRACKER_C = "http://127.0.0.1:7070/announce"

# The keys `torrent info --json` documents, for .torrent files and for magnets.
TORRENT_KEYS = {"kind", "name", "info_hash", "total_size", "piece_length", "num_pieces", "private",
                "hybrid_v2", "files", "trackers", "web_seeds", "comment", "created_by", "creation_date",
                "source", "magnet"}
MAGNET_KEYS = {"kind", "name", "info_hash", "info_hash_v2", "total_size", "trackers", "peers",
               "web_seeds", "select_only", "magnet"}


def run_cli(*args: str | os.PathLike[str], cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "torrent", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


def ok(*args: str | os.PathLike[str], cwd: Path | None = None,
       env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = run_cli(*args, cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc


def assert_user_error(proc: subprocess.CompletedProcess[str]) -> str:
    """Exit 2 and exactly one stderr line, ``torrent: error: …``; returns the message."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("torrent: error: "), proc.stderr
    assert len(lines[0]) > len("torrent: error: ")
    return lines[0]


def assert_usage_error(proc: subprocess.CompletedProcess[str]) -> str:
    """argparse-level mistakes: exit 2 and an ``error:`` line (a usage line may precede it)."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if re.match(r"torrent( \w+)?: error: ", line)]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TORRENT_PURE_PYTHON"}
    env.update(extra)
    return env


# ---- hand-made torrents ----------------------------------------------------

def payload_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def piece_hashes(data: bytes, piece_length: int) -> bytes:
    return b"".join(hashlib.sha1(data[i:i + piece_length]).digest() for i in range(0, len(data), piece_length))


def write_torrent(path: Path, info: dict[str, Any], **top: Any) -> str:
    """Encode a torrent by hand; returns the hex info-hash computed with hashlib."""
    path.write_bytes(encode({"info": info, **top}))
    return hashlib.sha1(encode(info)).hexdigest()


ONE_PIECE = payload_bytes(10_000, seed=7)


@pytest.fixture
def single_torrent(tmp_path: Path) -> tuple[Path, str]:
    """A one-piece single-file torrent with two tracker tiers, a web seed and a comment."""
    info = {"name": "hello.bin", "piece length": PIECE, "length": len(ONE_PIECE),
            "pieces": hashlib.sha1(ONE_PIECE).digest(), "private": 1, "source": "TEST"}
    path = tmp_path / "hello.torrent"
    info_hash = write_torrent(path, info, announce=TRACKER_A,
                              **{"announce-list": [[TRACKER_A, TRACKER_B], [TRACKER_C]],
                                 "url-list": ["http://127.0.0.1:8080/files/"],
                                 "comment": "a comment", "created by": "hand/1.0",
                                 "creation date": 1_700_000_000})
    return path, info_hash


MULTI = {"top.txt": payload_bytes(20_000, 1), "sub/inner.bin": payload_bytes(30_001, 2)}


@pytest.fixture
def multi_torrent(tmp_path: Path) -> tuple[Path, str]:
    blob = b"".join(MULTI.values())
    info = {"name": "album", "piece length": PIECE, "pieces": piece_hashes(blob, PIECE),
            "files": [{"length": len(data), "path": rel.split("/")} for rel, data in MULTI.items()]}
    path = tmp_path / "album.torrent"
    return path, write_torrent(path, info, announce=TRACKER_A)


# ---- --version ---------------------------------------------------------------

def test_version_names_the_package_version_and_speedups() -> None:
    out = ok("--version", env=clean_env()).stdout.splitlines()

    assert out[0] == f"torrent {torrent.__version__}"
    speedups = [line for line in out if line.startswith("speedups: ")]
    assert speedups in (["speedups: compiled (Cython)"], ["speedups: pure Python"])
    if os.environ.get("TORRENT_REQUIRE_SPEEDUPS"):  # scripts/test.sh builds them
        assert speedups == ["speedups: compiled (Cython)"]


def test_version_reports_pure_python_when_forced() -> None:
    out = ok("--version", env=clean_env(TORRENT_PURE_PYTHON="1")).stdout.splitlines()

    assert out[0] == f"torrent {torrent.__version__}"
    assert "speedups: pure Python" in out
    modules = [line.strip() for line in out if line.startswith("  ")]
    assert modules, out
    assert all(line.split(":", 1)[1].strip().startswith("python") for line in modules), out


# ---- info: .torrent files --------------------------------------------------------

def test_info_human_output(single_torrent: tuple[Path, str]) -> None:
    path, info_hash = single_torrent
    out = ok("info", path).stdout

    assert re.search(r"^Name:\s+hello\.bin$", out, re.MULTILINE)
    assert re.search(rf"^Info-hash:\s+{info_hash}$", out, re.MULTILINE)
    assert re.search(r"^Pieces:\s+1 ", out, re.MULTILINE)
    assert "10,000 bytes" in out
    assert re.search(r"^Private:\s+yes$", out, re.MULTILINE)
    assert re.search(r"^\s+\S+ \S+\s+hello\.bin$", out, re.MULTILINE)  # the file row
    for url in (TRACKER_A, TRACKER_B, TRACKER_C, "http://127.0.0.1:8080/files/"):
        assert url in out
    assert re.search(rf"^Magnet: magnet:\?xt=urn:btih:{info_hash}", out, re.MULTILINE)


def test_info_human_output_lists_every_file(multi_torrent: tuple[Path, str]) -> None:
    path, info_hash = multi_torrent
    out = ok("info", path).stdout

    assert info_hash in out
    assert re.search(r"^Pieces:\s+4 ", out, re.MULTILINE)  # 50,001 bytes in 16 KiB pieces
    assert "Files (2):" in out
    assert re.search(r"\salbum/top\.txt$", out, re.MULTILINE)
    assert re.search(r"\salbum/sub/inner\.bin$", out, re.MULTILINE)


def test_info_into_a_pipe_closed_early_says_nothing_more(tmp_path: Path) -> None:
    """`torrent info X | head -1`: the reader leaves after one line; no BrokenPipe traceback follows."""
    files = [{"length": 1, "path": [f"file-{k:05}.bin"]} for k in range(20_000)]
    info = {"name": "many", "piece length": PIECE, "pieces": b"\0" * 20 * (-(-20_000 // PIECE)), "files": files}
    path = tmp_path / "many.torrent"
    write_torrent(path, info)
    proc = subprocess.run(f"{sys.executable} -m torrent info {path} | head -1", shell=True, capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout.count("\n") == 1
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_info_json_single_file(single_torrent: tuple[Path, str]) -> None:
    path, info_hash = single_torrent
    data = json.loads(ok("info", "--json", path).stdout)

    assert TORRENT_KEYS <= data.keys()
    assert data["kind"] == "torrent"
    assert data["name"] == "hello.bin"
    assert data["info_hash"] == info_hash
    assert data["total_size"] == len(ONE_PIECE)
    assert data["piece_length"] == PIECE
    assert data["num_pieces"] == 1
    assert data["private"] is True
    assert data["hybrid_v2"] is False
    assert data["files"] == [{"path": "hello.bin", "length": len(ONE_PIECE), "padding": False}]
    assert data["trackers"] == [[TRACKER_A, TRACKER_B], [TRACKER_C]]
    assert data["web_seeds"] == ["http://127.0.0.1:8080/files/"]
    assert data["comment"] == "a comment"
    assert data["created_by"] == "hand/1.0"
    assert data["creation_date"] == 1_700_000_000
    assert data["source"] == "TEST"
    assert data["magnet"].startswith(f"magnet:?xt=urn:btih:{info_hash}&")
    assert "dn=hello.bin" in data["magnet"]


def test_info_json_multi_file(multi_torrent: tuple[Path, str]) -> None:
    path, info_hash = multi_torrent
    data = json.loads(ok("info", "--json", path).stdout)

    assert data["info_hash"] == info_hash
    assert data["name"] == "album"
    assert data["total_size"] == sum(map(len, MULTI.values()))
    assert data["num_pieces"] == 4
    assert data["private"] is False
    assert [(f["path"], f["length"]) for f in data["files"]] == [
        (f"album/{rel}", len(blob)) for rel, blob in MULTI.items()]
    assert data["trackers"] == [[TRACKER_A]]
    assert data["comment"] is None and data["source"] is None and data["creation_date"] is None


# ---- info: magnets ---------------------------------------------------------------

HASH_HEX = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a"
HASH_B32 = base64.b32encode(bytes.fromhex(HASH_HEX)).decode()


@pytest.mark.parametrize("spelled", [HASH_HEX, HASH_HEX.upper(), HASH_B32], ids=["hex", "HEX", "base32"])
def test_info_magnet_json(spelled: str) -> None:
    uri = f"magnet:?xt=urn:btih:{spelled}&dn=Some%20Name&tr={TRACKER_A}&xl=12345"
    data = json.loads(ok("info", "--json", uri).stdout)

    assert MAGNET_KEYS <= data.keys()
    assert data["kind"] == "magnet"
    assert data["info_hash"] == HASH_HEX
    assert data["name"] == "Some Name"
    assert data["trackers"] == [[TRACKER_A]]
    assert data["total_size"] == 12345
    assert data["magnet"].startswith(f"magnet:?xt=urn:btih:{HASH_HEX}")


@pytest.mark.parametrize("spelled", [HASH_HEX, HASH_B32], ids=["hex", "base32"])
def test_info_magnet_human(spelled: str) -> None:
    out = ok("info", f"magnet:?xt=urn:btih:{spelled}&tr={TRACKER_A}").stdout

    assert re.search(rf"^Info-hash:\s+{HASH_HEX}$", out, re.MULTILINE)
    assert re.search(r"^Name:", out, re.MULTILINE)
    assert TRACKER_A in out
    assert re.search(rf"^Magnet: magnet:\?xt=urn:btih:{HASH_HEX}", out, re.MULTILINE)


# ---- create ---------------------------------------------------------------

@pytest.fixture
def payload(tmp_path: Path) -> Path:
    """A single file of 100,000 bytes: four pieces of 32 KiB, the last one short."""
    path = tmp_path / "src" / "payload.bin"
    path.parent.mkdir()
    path.write_bytes(payload_bytes(100_000, seed=3))
    return path


def load(path: Path) -> dict[bytes, Any]:
    top = decode(path.read_bytes())
    assert isinstance(top, dict)
    return top


def test_create_default_output_name_in_cwd(payload: Path, tmp_path: Path) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = ok("create", payload, "-q", cwd=cwd)

    out = cwd / "payload.bin.torrent"
    assert sorted(p.name for p in cwd.iterdir()) == ["payload.bin.torrent"]
    top = load(out)
    info = top[b"info"]
    assert info[b"name"] == b"payload.bin"
    assert info[b"length"] == 100_000
    data = payload.read_bytes()
    assert info[b"pieces"] == piece_hashes(data, info[b"piece length"])
    info_hash = hashlib.sha1(encode(info)).hexdigest()
    assert info_hash in proc.stdout
    assert json.loads(ok("info", "--json", out).stdout)["info_hash"] == info_hash


def test_create_output_option_and_piece_size(payload: Path, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere" / "x.torrent"
    out.parent.mkdir()
    ok("create", payload, "-o", out, "--piece-size", "32K", "-q", cwd=tmp_path)

    assert not (tmp_path / "payload.bin.torrent").exists()
    info = load(out)[b"info"]
    assert info[b"piece length"] == 32 * 1024
    assert info[b"pieces"] == piece_hashes(payload.read_bytes(), 32 * 1024)
    assert len(info[b"pieces"]) == 4 * 20


def test_create_directory(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    files = {"b.bin": payload_bytes(40_000, 4), "a/z.bin": payload_bytes(5, 5),
             "a/deep/y.txt": payload_bytes(33_000, 6), "empty": b""}
    for rel, blob in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(blob)
    out = tmp_path / "tree.torrent"
    ok("create", root, "-o", out, "--piece-size", "16384", "-q")

    info = load(out)[b"info"]
    listed = [("/".join(p.decode() for p in f[b"path"]), f[b"length"]) for f in info[b"files"]]
    order = sorted(files, key=lambda rel: rel.split("/"))
    assert listed == [(rel, len(files[rel])) for rel in order]
    assert info[b"pieces"] == piece_hashes(b"".join(files[rel] for rel in order), 16384)


def test_create_trackers_and_options(payload: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.torrent"
    ok("create", payload, "-o", out, "-q", "-t", f"{TRACKER_A},{TRACKER_B}", "-t", TRACKER_C,
       "--private", "-w", "http://127.0.0.1:8080/ws/", "-c", "hi there", "-s", "SRC")

    top = load(out)
    assert top[b"announce"] == TRACKER_A.encode()
    assert top[b"announce-list"] == [[TRACKER_A.encode(), TRACKER_B.encode()], [TRACKER_C.encode()]]
    assert top[b"url-list"] == [b"http://127.0.0.1:8080/ws/"]
    assert top[b"comment"] == b"hi there"
    assert top[b"info"][b"private"] == 1
    assert top[b"info"][b"source"] == b"SRC"


def test_create_refuses_to_overwrite_without_force(payload: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.torrent"
    out.write_bytes(b"precious")

    message = assert_user_error(run_cli("create", payload, "-o", out, "-q"))
    assert str(out) in message and "--force" in message
    assert out.read_bytes() == b"precious"

    ok("create", payload, "-o", out, "-q", "-f")
    assert load(out)[b"info"][b"name"] == b"payload.bin"


@pytest.mark.parametrize("size", ["1000", "abc", "8K", "3M", "0", "-16K"])
def test_create_rejects_bad_piece_size(payload: Path, tmp_path: Path, size: str) -> None:
    proc = run_cli("create", payload, f"--piece-size={size}", "-q", cwd=tmp_path)

    assert_user_error(proc)
    assert not (tmp_path / "payload.bin.torrent").exists()


def test_create_missing_path(tmp_path: Path) -> None:
    message = assert_user_error(run_cli("create", tmp_path / "nope", "-q", cwd=tmp_path))
    assert "nope" in message


@pytest.mark.parametrize("content", ["nothing", "only-empty-files"])
def test_create_without_data(tmp_path: Path, content: str) -> None:
    root = tmp_path / "src"
    root.mkdir()
    if content == "only-empty-files":
        (root / "empty").touch()
    assert_user_error(run_cli("create", root, "-q", cwd=tmp_path))
    assert not (tmp_path / "src.torrent").exists()


# ---- bad input ------------------------------------------------------------

def _bad_torrents(tmp_path: Path) -> dict[str, Path]:
    good_info = {"name": "x", "piece length": PIECE, "length": 10, "pieces": b"\0" * 20}
    cases: dict[str, bytes] = {
        "not-bencode": b"\x89PNG\r\n\x1a\n definitely not bencode",
        "truncated": encode({"info": good_info})[:-5],
        "integer": b"i42e",
        "list": b"l4:spame",
        "no-info": encode({"announce": TRACKER_A}),
        "info-not-dict": encode({"info": [1, 2]}),
        "pieces-not-multiple-of-20": encode({"info": {**good_info, "pieces": b"\0" * 19}}),
        "pieces-wrong-count": encode({"info": {**good_info, "pieces": b"\0" * 40}}),
        "no-pieces": encode({"info": {k: v for k, v in good_info.items() if k != "pieces"}}),
        "zero-piece-length": encode({"info": {**good_info, "piece length": 0}}),
        "negative-length": encode({"info": {**good_info, "length": -1}}),
        "length-and-files": encode({"info": {**good_info, "files": [{"length": 10, "path": [b"a"]}]}}),
        "empty": b"",
    }
    paths = {}
    for name, blob in cases.items():
        paths[name] = tmp_path / f"{name}.torrent"
        paths[name].write_bytes(blob)
    return paths


BAD_TORRENTS = ["not-bencode", "truncated", "integer", "list", "no-info", "info-not-dict",
                "pieces-not-multiple-of-20", "pieces-wrong-count", "no-pieces", "zero-piece-length",
                "negative-length", "length-and-files", "empty"]


@pytest.mark.parametrize("case", BAD_TORRENTS)
@pytest.mark.parametrize("as_json", [False, True], ids=["human", "json"])
def test_info_rejects_bad_torrent(tmp_path: Path, case: str, as_json: bool) -> None:
    path = _bad_torrents(tmp_path)[case]
    proc = run_cli("info", path, *(["--json"] if as_json else []))

    message = assert_user_error(proc)
    assert proc.stdout == ""
    assert path.name in message


def test_info_pieces_message_names_the_problem(tmp_path: Path) -> None:
    path = _bad_torrents(tmp_path)["pieces-not-multiple-of-20"]
    assert "pieces" in assert_user_error(run_cli("info", path))


def test_info_missing_file(tmp_path: Path) -> None:
    message = assert_user_error(run_cli("info", tmp_path / "missing.torrent"))
    assert "missing.torrent" in message


def test_info_directory(tmp_path: Path) -> None:
    assert_user_error(run_cli("info", tmp_path))


@pytest.mark.parametrize("uri", [
    "magnet:?xt=urn:btih:xyz",
    "magnet:?dn=no-hash",
    f"magnet:?xt=urn:btih:{HASH_HEX}&xt=urn:btih:{'0' * 40}",
    f"magnet:?xt=urn:btih:{HASH_HEX}&x.pe=127.0.0.1:99999",
    "magnet:",
])
def test_info_rejects_bad_magnet(uri: str) -> None:
    proc = run_cli("info", uri)
    assert_user_error(proc)
    assert proc.stdout == ""


def test_no_arguments_is_a_usage_error() -> None:
    proc = run_cli()
    assert proc.returncode == 2, proc
    assert proc.stderr.splitlines(), "no error message on stderr"
    assert proc.stderr.splitlines()[-1].startswith("torrent: error: "), proc.stderr


@pytest.mark.parametrize("args", [
    ["--bogus"],
    ["info", "--bogus", "x.torrent"],
    ["info"],
    ["create"],
    ["create", ".", "--threads", "many"],
    ["frobnicate"],
], ids=["unknown-option", "unknown-info-option", "info-without-source", "create-without-path",
        "bad-threads", "unknown-command"])
def test_usage_errors(args: list[str], tmp_path: Path) -> None:
    proc = run_cli(*args, cwd=tmp_path)
    assert_usage_error(proc)
    assert list(tmp_path.iterdir()) == []


def test_port_in_use_is_a_one_line_error(single_torrent: tuple[Path, str], tmp_path: Path) -> None:
    torrent_path, _ = single_torrent
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_cli("download", torrent_path, "-o", tmp_path / "out", "--port", port, "--no-seed", "-q")
    message = assert_user_error(proc)
    assert f"cannot listen on 0.0.0.0:{port}" in message and "--port" in message
    assert not (tmp_path / "out" / "hello.bin").exists()


def test_bench_settle_out_of_range_is_a_usage_error(tmp_path: Path) -> None:
    message = assert_user_error(run_cli("bench", "--settle", "-1", "--size", "1M", cwd=tmp_path))
    assert "--settle" in message
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("option", [
    ["--size", "1G"], ["--piece-size", "256K"], ["--seeders", "1"], ["--leechers", "1"], ["--scenario", "ours-ours"],
    ["--no-ceilings"], ["--snapshots", "0"], ["--encryption"], ["--seeder-max-up", "0"], ["--transport", "tcp"],
], ids=lambda option: option[0])
def test_bench_torrents_refuses_the_download_options_it_would_ignore(option: list[str], tmp_path: Path) -> None:
    """Before, ``--torrents N`` ran its own bench and dropped these without a word. Each is given with its
    default value: given is what counts. (``--runs 0``: had the option passed, that would be the error.)"""
    message = assert_user_error(run_cli("bench", "--torrents", "2", *option, "--runs", "0", cwd=tmp_path))
    assert message == f"torrent: error: --torrents N (idle seeding) does not use {option[0]}: leave it out"
    assert not list(tmp_path.iterdir())


def test_bench_idle_seconds_without_torrents_is_a_usage_error(tmp_path: Path) -> None:
    message = assert_user_error(run_cli("bench", "--idle-seconds", "30", "--runs", "0", cwd=tmp_path))
    assert message == "torrent: error: --idle-seconds is for --torrents N only"
    assert not list(tmp_path.iterdir())


# ---- config ----------------------------------------------------------------------------


def config_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "cfg"), "XDG_DATA_HOME": str(tmp_path / "data")}


def run_config(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "torrent", "config", *args], capture_output=True, text=True,
                          env=config_env(tmp_path), timeout=60, check=False)


def test_config_shows_each_setting_and_where_it_came_from(tmp_path: Path) -> None:
    config = tmp_path / "cfg" / "torrent" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[rates]\nmax_down = "2M"\n\n[peer]\nmax_requests = 250\n')
    proc = run_config(tmp_path, "--max-up", "500K", "--set", "peer.max_requests=300")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert f"max_down = 2097152  # 2.0 MiB, from config file {config}" in lines
    assert "max_up = 512000  # 500 KiB, from command line" in lines
    assert "max_requests = 300  # from command line" in lines  # the command line wins over the file
    assert any(line.startswith("listen_port = 6881") and "from" not in line for line in lines)
    data = json.loads(run_config(tmp_path, "--json").stdout)
    assert data["rates.max_down"]["value"] == 2 * 1024 * 1024
    assert data["rates.max_down"]["source"] == f"config file {config}"
    assert data["network.listen_port"] == {"value": 6881, "source": "default",
                                           "doc": data["network.listen_port"]["doc"]}


@pytest.mark.parametrize("content, message", [
    ("[rates]\nmax_dwn = 5\n", "unknown setting 'rates.max_dwn' (did you mean 'rates.max_down'?)"),
    ("[peer]\nmax_requests = 0\n", "bad value for 'peer.max_requests': must be at least 1, got 0"),
    ('[rates]\nmax_down = "fast"\n', "bad value for 'rates.max_down': expected a size such as 500K or 2M"),
    ("[rates\n", "invalid TOML"),
])
def test_a_bad_config_file_is_a_one_line_error_naming_the_key(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "cfg" / "torrent" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(content)
    proc = run_config(tmp_path)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"torrent: error: config file {config}: ") and message in line


def test_a_bad_command_line_setting_is_a_one_line_error(tmp_path: Path) -> None:
    proc = run_config(tmp_path, "--set", "queue.max_active_seeds=lots")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "torrent: error: command line: bad value for 'queue.max_active_seeds': expected a whole number, got 'lots'"]
    proc = run_config(tmp_path, "--config", str(tmp_path / "missing.toml"))
    assert proc.returncode == 2 and "missing.toml" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_seeding_a_magnet_link_asks_for_the_torrent_file(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "torrent", "seed", "magnet:?xt=urn:btih:" + "a" * 40, "--dir",
                           str(tmp_path)], capture_output=True, text=True, env=config_env(tmp_path), timeout=60,
                          check=False)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line == "torrent: error: seed needs the .torrent file: a magnet link does not say what the data is"


def test_a_bad_magnet_link_is_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "torrent", "download", "magnet:?xt=urn:btih:nothex"],
                          capture_output=True, text=True, env=config_env(tmp_path), timeout=60, check=False)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line == ("torrent: error: invalid info-hash 'nothex' in magnet link: expected 40 hex or 32 base32 "
                    "characters")


# ---- hostile input: dates, files that are not files, terminal escapes (issue 13) ----------------------------


@pytest.mark.parametrize("date", [10**20, -10**15, 10**400], ids=["1e20", "-1e15", "1e400"])
def test_info_with_an_impossible_creation_date(tmp_path: Path, date: int) -> None:
    path = tmp_path / "dated.torrent"
    write_torrent(path, {"name": "x.bin", "piece length": PIECE, "length": len(ONE_PIECE),
                         "pieces": hashlib.sha1(ONE_PIECE).digest()}, **{"creation date": date})
    out = ok("info", path).stdout
    assert re.search(r"^Name:\s+x\.bin$", out, re.MULTILINE) and "Created on" not in out
    assert json.loads(ok("info", "--json", path).stdout)["creation_date"] is None


def test_info_and_download_refuse_what_is_not_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.torrent"
    os.mkfifo(fifo)  # nobody ever writes to it: opening it for reading used to wait for ever
    for args in (("info", fifo), ("info", "/dev/zero"), ("download", "/dev/zero", "-o", tmp_path),
                 ("download", fifo, "-o", tmp_path)):
        proc = subprocess.run([sys.executable, "-m", "torrent", *map(str, args)], capture_output=True, text=True,
                              env=config_env(tmp_path), timeout=30, check=False)
        line = assert_user_error(proc)
        assert "not a .torrent file" in line and ("FIFO" in line or "/dev/zero is a character device" in line)


def test_download_caps_the_torrent_size_by_the_setting(tmp_path: Path, single_torrent: tuple[Path, str]) -> None:
    path, _ = single_torrent
    proc = subprocess.run([sys.executable, "-m", "torrent", "download", str(path), "-o", str(tmp_path), "--set",
                           "limits.bencode_max_size=100"], capture_output=True, text=True, env=config_env(tmp_path),
                          timeout=30, check=False)
    line = assert_user_error(proc)
    assert "too large" in line and "limit 100 bytes, limits.bencode_max_size" in line


HOSTILE = "\x1b]0;pwned\x07|\x1b[2J|\r|\x9b|[red]x[/red]"
HOSTILE_SHOWN = "\\x1b]0;pwned\\x07|\\x1b[2J|\\x0d|\\x9b|[red]x[/red]"
RAW_CONTROLS = (b"\x1b", b"\x07", b"\r", "\x9b".encode())


@pytest.fixture
def hostile_torrent(tmp_path: Path) -> Path:
    info = {"name": "evil" + HOSTILE, "piece length": PIECE, "pieces": piece_hashes(ONE_PIECE, PIECE),
            "files": [{"length": len(ONE_PIECE), "path": ["file" + HOSTILE]}]}
    path = tmp_path / "evil.torrent"
    write_torrent(path, info, announce="http://t/" + HOSTILE, comment="c" + HOSTILE,
                  **{"created by": "b" + HOSTILE, "url-list": ["http://w/" + HOSTILE]})
    return path


def test_info_escapes_control_sequences_from_the_torrent(hostile_torrent: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "torrent", "info", str(hostile_torrent)], capture_output=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert not any(raw in proc.stdout for raw in RAW_CONTROLS), proc.stdout
    out = proc.stdout.decode()
    for label, value in (("Comment", "c"), ("Created by", "b")):
        assert re.search(rf"^{label}:\s+{re.escape(value + HOSTILE_SHOWN)}$", out, re.MULTILINE), out
    for shown in ("tier 1: http://t/" + HOSTILE_SHOWN, "  http://w/" + HOSTILE_SHOWN):
        assert shown in out
    # names and paths pass the path sanitizer first (C0 controls become "_"), which keeps C1 ones
    assert re.search(r"^Name:\s+evil.*\\x9b\|\[red\]x", out, re.MULTILINE), out
    assert re.search(r"/file.*\\x9b\|\[red\]x", out), out


def test_info_json_escapes_control_sequences_and_keeps_the_values(hostile_torrent: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "torrent", "info", "--json", str(hostile_torrent)],
                          capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert not any(raw in proc.stdout for raw in RAW_CONTROLS), proc.stdout
    data = json.loads(proc.stdout)
    assert data["comment"] == "c" + HOSTILE and data["created_by"] == "b" + HOSTILE
    assert data["trackers"] == [["http://t/" + HOSTILE]] and data["web_seeds"] == ["http://w/" + HOSTILE]


def test_info_escapes_a_magnets_display_name() -> None:
    from urllib.parse import quote

    uri = f"magnet:?xt=urn:btih:{'a' * 40}&dn={quote(HOSTILE)}&tr={quote('http://t/' + HOSTILE)}"
    proc = subprocess.run([sys.executable, "-m", "torrent", "info", uri], capture_output=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert not any(raw in proc.stdout for raw in RAW_CONTROLS), proc.stdout
    assert re.search(rf"^Name:\s+{re.escape(HOSTILE_SHOWN)}$", proc.stdout.decode(), re.MULTILINE)


def test_error_lines_escape_what_they_quote(tmp_path: Path) -> None:
    path = tmp_path / ("bad\x1b[2J.torrent")
    path.write_bytes(b"d4:infoi1ee")
    proc = subprocess.run([sys.executable, "-m", "torrent", "info", str(path)], capture_output=True, timeout=60,
                          check=False)
    assert proc.returncode == 2 and b"\x1b" not in proc.stderr
    assert "bad\\x1b[2J.torrent" in proc.stderr.decode()


def test_runner_lines_and_log_messages_escape_names_and_errors() -> None:
    import logging

    from tests.tui.fakes import make_torrent
    from torrent.cli.runner import _line, _PrintableFormatter

    line = _line(make_torrent(name="n" + HOSTILE, last_error="tracker said " + HOSTILE))
    assert line.startswith("n" + HOSTILE_SHOWN + ":") and "[tracker said " + HOSTILE_SHOWN + "]" in line
    record = logging.LogRecord("torrent.tracker", logging.WARNING, __file__, 1, "tracker %s: %s", ("http://t/",
                               HOSTILE), None)
    assert _PrintableFormatter("torrent: %(message)s").format(record) == f"torrent: tracker http://t/: {HOSTILE_SHOWN}"
