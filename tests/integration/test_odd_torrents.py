"""An odd torrent libtorrent loads (issue 13) goes from our seeder to our leecher on 127.0.0.1.

The torrent holds two files with one path, a file whose path is only empty names, a file
named like a directory, a BEP 47 pad file without a path, a symlink without a length, and a
newline after its dictionary. Both sessions run the same reader, so the seeder finds its data
under the names the leecher writes: the renamed paths, which are also libtorrent's.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from swarmkit import PIECE, local_settings, run, same_tree, start_session, wait_complete, wait_for

from torrent.codec import bencoding, metainfo

# (path in the torrent, length, where our reader and libtorrent put it); None: a pad file, never written.
ODD_FILES: list[tuple[list[bytes] | None, int, str | None]] = [
    ([b"foo", b"bar.txt"], 40_000, "foo/bar.txt"),
    (None, 2 * PIECE - 40_000, None),  # pad: the next file starts on a piece boundary
    ([b"foo", b"bar.txt"], 30_000, "foo/bar.1.txt"),  # a second file with that path
    ([b"", b""], 5_000, "_/_"),  # only empty names
    ([b"c.bin"], 100_003, "c.bin"),
    ([b""], 7_000, "_.1"),  # "_" is a directory already
]


def odd_torrent(tmp: Path) -> tuple[bytes, Path, dict[str, bytes]]:
    """The .torrent's bytes, the seeder's save path holding the data, and each written file's bytes."""
    rng = random.Random(13)
    entries: list[dict[bytes, Any]] = []
    stream = bytearray()
    contents: dict[str, bytes] = {}
    for path, length, name in ODD_FILES:
        if path is None:
            entries.append({b"attr": b"p", b"length": length})
            stream += bytes(length)
            continue
        data = rng.randbytes(length)
        entries.append({b"length": length, b"path": path})
        stream += data
        contents[f"odd/{name}"] = data
    entries.append({b"attr": b"l", b"path": [b"link"], b"symlink path": [b"c.bin"]})  # no length: 0 bytes
    pieces = b"".join(hashlib.sha1(stream[i:i + PIECE]).digest() for i in range(0, len(stream), PIECE))
    info = {b"name": b"odd", b"piece length": PIECE, b"files": entries, b"pieces": pieces}
    raw = bencoding.encode({b"info": info}) + b"\n"
    seed = tmp / "seed"
    for name, data in contents.items():
        (seed / name).parent.mkdir(parents=True, exist_ok=True)
        (seed / name).write_bytes(data)
    return raw, seed, contents


def libtorrent_names(raw: bytes) -> list[tuple[str, int]]:
    import libtorrent as lt

    params = lt.load_torrent_buffer(raw)
    layout = params.ti.layout()
    return [(params.renamed_files.get(i, layout.file_path(i)), layout.file_size(i))
            for i in range(layout.num_files())
            if not layout.file_flags(i) & (lt.file_storage.flag_pad_file | lt.file_storage.flag_symlink)]


@pytest.mark.parametrize("assembly", [32 * 1024 * 1024, 0], ids=["in-memory", "every-block-to-disk"])
def test_odd_torrent_downloads_byte_exact_from_our_seed(tmp_path: Path, assembly: int) -> None:
    """Also with every block written as it arrives: the pad file's blocks are not written, and the
    piece read back for hashing has its zeros."""
    raw, seed, contents = odd_torrent(tmp_path)
    meta = metainfo.parse(raw)
    written = [(f.display_path, f.length) for f in meta.files if not f.is_padding and f.symlink is None]
    assert written == [(name, len(data)) for name, data in contents.items()] == libtorrent_names(raw)
    torrent = tmp_path / "odd.torrent"
    torrent.write_bytes(raw)

    async def main() -> None:
        seeder = await start_session(tmp_path, "s")
        leecher = await start_session(tmp_path, "l", local_settings(torrent__assembly_bytes=assembly))
        try:
            sid = await seeder.add(torrent, save_path=seed)
            seeded = await wait_for(seeder, sid, lambda s: s.state == "seeding", what="seeding")
            # Pad bytes are nobody's: verified, wanted and total are the user's bytes alike.
            assert seeded.progress == 1.0 and seeded.eta == 0.0
            assert seeded.verified == seeded.wanted_verified == seeded.wanted_size == seeded.total_size
            assert seeded.total_size == meta.payload_length < meta.total_length
            lid = await leecher.add(torrent, save_path=tmp_path / "out", peers=[("127.0.0.1", seeder.listen_port)])
            snap = await wait_complete(leecher, lid)
            assert snap.hash_failures == 0 and snap.banned == 0
        finally:
            await leecher.close()
            await seeder.close()

    run(main())
    out = tmp_path / "out"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == sorted(contents)
    assert all((out / name).read_bytes() == data for name, data in contents.items())
    assert same_tree(seed / "odd", out / "odd")
    assert not (out / "odd" / ".pad").exists() and not (out / "odd" / "link").exists()


def test_torrent_info_shows_the_names_written_and_warns(tmp_path: Path) -> None:
    raw, _, contents = odd_torrent(tmp_path)
    torrent = tmp_path / "odd.torrent"
    torrent.write_bytes(raw)
    done = subprocess.run([sys.executable, "-m", "torrent", "info", "--json", str(torrent)],
                          capture_output=True, text=True, timeout=60, check=True)
    shown = json.loads(done.stdout)["files"]
    assert [(f["path"], f["length"]) for f in shown if not f["padding"] and f["path"] != "odd/link"] == [
        (name, len(data)) for name, data in contents.items()]
    assert done.stderr.splitlines() == [
        "torrent: warning: 1 byte after the end of the torrent's dictionary ignored",
        "torrent: warning: file #2 'odd/foo/bar.txt' is renamed 'bar.1.txt': another file or a directory has that name",
        "torrent: warning: file #5 'odd/_' is renamed '_.1': another file or a directory has that name",
    ]
