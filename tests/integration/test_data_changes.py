"""A file rewritten, truncated, deleted or replaced under a seeding torrent, on
127.0.0.1 through the session API.

The damaged seed must go to ``error`` naming the file, never send a block that
fails its hash (the leecher counts none and bans nobody), and a recheck must
leave exactly the pieces still good; it then fetches the rest from an intact
seed and serves everything to the leecher, which completes byte-exact.

The seed's 30 s file watch (``storage.resume_every``) is put out of reach, so
what is tested is the serving path: the change is seen when a peer asks.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from swarmkit import local_settings, make_torrent, run, same_tree, start_session, wait_complete, wait_for, wait_state

from torrent.codec.metainfo import Metainfo
from torrent.session import PieceState

DAMAGED = 1  # the middle file of three in the torrent's order: its first and last pieces span its neighbours


def _rewrite(path: Path) -> None:
    """Other bytes of the same size, written in place (the mtime moves)."""
    with open(path, "r+b") as fh:
        fh.write(random.Random(7).randbytes(path.stat().st_size))


def _rewrite_mtime_restored(path: Path) -> None:
    """The sneaky case: size and mtime as before, so only the ctime tells."""
    st = path.stat()
    _rewrite(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _delete(path: Path) -> None:
    path.unlink()  # the seed's open descriptor still reads the old inode: it must not carry on as if nothing happened


def _replace(path: Path) -> None:
    """A new file renamed over the old one (as editors save), size and mtime put back."""
    st = path.stat()
    new = path.with_name(path.name + ".new")
    new.write_bytes(random.Random(8).randbytes(st.st_size))
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(new, path)


# change → (what it does, what the seed's error says about the file). Reads for several peers run at once
# and the last error is the one shown, so some changes have two right answers: once the deleted file's
# descriptor is dropped, the next read finds the path missing, or the new file failing its hash.
CHANGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "rewritten": (_rewrite, "no longer matches its hash"),
    "rewritten-mtime-restored": (_rewrite_mtime_restored, "no longer matches its hash"),
    "truncated": (_truncate, "changed size on disk|is shorter than the torrent says"),
    "deleted": (_delete, "was deleted or replaced|is missing"),
    "replaced": (_replace, "was deleted or replaced|no longer matches its hash"),
}


def good_pieces(meta: Metainfo, save_path: Path) -> set[int]:
    """The pieces whose bytes on disk hash right now (the oracle: hashlib over the files as they are)."""
    contents: list[bytes | None] = []
    for entry in meta.files:
        path = save_path.joinpath(*entry.path)
        contents.append(path.read_bytes() if path.is_file() else None)
    good = set()
    for index in range(meta.num_pieces):
        digest = hashlib.sha1()
        for part in meta.geometry.piece_slices(index):
            data = contents[part.file_index]
            if data is None or len(data) < part.offset + part.length:
                break
            digest.update(data[part.offset:part.offset + part.length])
        else:
            if digest.digest() == meta.piece_hash(index):
                good.add(index)
    return good


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_file_changed_under_a_seed(tmp_path: Path, change: str) -> None:
    meta, data, torrent = make_torrent(tmp_path, 2 * 1024 * 1024 + 777)
    intact = tmp_path / "intact"
    shutil.copytree(data, intact)
    damaged = data.joinpath(*meta.files[DAMAGED].path).resolve()
    settings = local_settings(storage__resume_every=3600.0)  # the 30 s watch out of the way

    async def main() -> None:
        seed = await start_session(tmp_path, "seed", settings)
        leecher = await start_session(tmp_path, "leecher")
        other = None
        try:
            sid = await seed.add(torrent, save_path=data)
            await wait_state(seed, sid, "seeding")
            act, says = CHANGES[change]
            act(damaged)
            still_good = good_pieces(meta, data)
            assert 0 < len(still_good) < meta.num_pieces

            lid = await leecher.add(torrent, save_path=tmp_path / "out", peers=[("127.0.0.1", seed.listen_port)])
            failed = await wait_state(seed, sid, "error", timeout=20)
            assert failed.last_error is not None and str(damaged) in failed.last_error, failed.last_error
            assert re.search(says, failed.last_error) and "recheck" in failed.last_error, failed.last_error
            assert "\n" not in failed.last_error
            await leecher.pause(lid)  # what reached it by now is all the seed ever sent
            got = leecher.torrent(lid)
            assert got.hash_failures == 0 and got.banned == 0, got

            await seed.recheck(sid)
            after = await wait_for(seed, sid, lambda s: s.state == "downloading", timeout=20,
                                   what="the recheck")
            states = seed.piece_map(sid).states
            assert {i for i, s in enumerate(states) if s == PieceState.HAVE} == still_good
            assert after.last_error is None

            # The rest comes from an intact seed; the leecher gets everything through the rechecked one.
            other = await start_session(tmp_path, "other")
            oid = await other.add(torrent, save_path=intact)
            await wait_state(other, oid, "seeding")
            await seed.add_peers(sid, [("127.0.0.1", other.listen_port)])
            await wait_complete(seed, sid, timeout=30)
            await leecher.resume(lid)
            done = await wait_complete(leecher, lid, timeout=30)
            assert done.hash_failures == 0 and done.banned == 0, done
            assert seed.torrent(sid).hash_failures == 0
        finally:
            await leecher.close()
            await seed.close()
            if other is not None:
                await other.close()
        assert same_tree(intact / "payload", data / "payload")
        assert same_tree(intact / "payload", tmp_path / "out" / "payload")

    run(main(), timeout=90)
