"""A saved session survives SIGKILL: every torrent comes back in its state,
nothing verified is fetched or hashed again."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from swarmkit import make_torrent, run, same_tree, start_session, wait_state

SESSION_PROC = Path(__file__).with_name("session_proc.py")


class SessionProcess:
    """``session_proc.py`` as a child process, read through its report file."""

    def __init__(self, state_dir: Path, spec: dict[str, Any], workdir: Path, name: str) -> None:
        spec_path = workdir / f"{name}-spec.json"
        spec_path.write_text(json.dumps(spec))
        self.report = workdir / f"{name}-report.jsonl"
        self.log = open(workdir / f"{name}.log", "wb")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen([sys.executable, str(SESSION_PROC), str(state_dir), str(spec_path),
                                      str(self.report)], stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def latest(self) -> dict[str, dict[str, Any]]:
        """The last complete report line: snapshots by torrent name."""
        try:
            lines = self.report.read_text().splitlines()
        except FileNotFoundError:
            return {}
        for line in reversed(lines):
            try:
                return {t["name"]: t for t in json.loads(line)["torrents"]}
            except (ValueError, KeyError):
                continue
        return {}

    def changes(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(old state, new state, the torrent's snapshot at that moment), in order."""
        out = []
        for line in self.report.read_text().splitlines():
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if "event" in data:
                out.append((data["event"]["old"], data["event"]["new"], data["torrent"]))
        return out

    async def wait(self, predicate: Any, what: str, timeout: float = 60) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            snap = self.latest()
            if snap and predicate(snap):
                return snap
            if self.proc.poll() is not None:
                break
            await asyncio.sleep(0.1)
        self.log.flush()
        raise AssertionError(f"{what}: not seen; last report {self.latest()}; log: "
                             f"{Path(self.log.name).read_text(errors='replace')[-2000:]}")

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def test_sigkill_and_restart_restores_every_torrent_and_refetches_nothing(tmp_path: Path) -> None:
    """Three torrents: one paused and one seeding (their data complete on disk),
    one half-downloaded from a rate-limited seeder. SIGKILL, restart: all three
    come back in their states; the paused and seeding ones hash nothing; the
    half-downloaded one keeps every piece it had verified and receives only the
    rest."""
    paused_meta, paused_seed, paused_torrent = make_torrent(tmp_path / "a", 2 * 1024 * 1024, name="paused")
    seeding_meta, seeding_seed, seeding_torrent = make_torrent(tmp_path / "b", 3 * 1024 * 1024, name="seeding")
    half_meta, half_seed, half_torrent = make_torrent(tmp_path / "c", 24 * 1024 * 1024, files=2, name="half")
    for seed, name in ((paused_seed, "paused"), (seeding_seed, "seeding")):
        shutil.copytree(seed / name, tmp_path / "data" / name)
    state = tmp_path / "state"
    base = {"network.bind": "127.0.0.1", "network.listen_port": 0}

    async def main() -> None:
        seeder = await start_session(tmp_path, "seeder")
        await seeder.set_rate_limits(max_up=3 * 1024 * 1024)  # slow enough to kill half-way
        first = second = None
        try:
            sid = await seeder.add(half_torrent, save_path=half_seed)
            await wait_state(seeder, sid, "seeding")
            spec = {"settings": base, "add": [
                {"torrent": str(paused_torrent), "save_path": str(tmp_path / "data"), "paused": True},
                {"torrent": str(seeding_torrent), "save_path": str(tmp_path / "data")},
                {"torrent": str(half_torrent), "save_path": str(tmp_path / "data"),
                 "peers": [["127.0.0.1", seeder.listen_port]]}]}
            first = SessionProcess(state, spec, tmp_path, "first")
            before = await first.wait(
                lambda s: len(s) == 3 and s["paused"]["state"] == "paused" and s["seeding"]["state"] == "seeding"
                and 0.3 < s["half"]["progress"] < 0.7, "the three torrents settled, the third half-way")
            assert before["paused"]["hashed"] == paused_meta.payload_length  # first sight: hashed once
            first.kill()
            verified_at_kill = before["half"]["verified"]
            await seeder.set_rate_limits(max_up=0)
            await asyncio.sleep(0.5)  # the killed connection's queued blocks drain or die
            sent_before = seeder.torrent(sid).uploaded

            second = SessionProcess(state, {"settings": base}, tmp_path, "second")
            restored = await second.wait(
                lambda s: len(s) == 3 and s["half"]["state"] not in ("checking", "queued"), "the restored session")
            assert restored["paused"]["state"] == "paused"
            assert restored["seeding"]["state"] == "seeding"
            assert restored["paused"]["hashed"] == 0 and restored["seeding"]["hashed"] == 0
            assert restored["paused"]["verified"] == paused_meta.payload_length
            assert restored["seeding"]["verified"] == seeding_meta.payload_length
            assert restored["paused"]["queue_position"] == 0 and restored["half"]["queue_position"] == 2
            # The half-downloaded torrent as its check left it, before any new piece came.
            (half,) = [t for old, new, t in second.changes() if t["name"] == "half" and old == "checking"]
            # Every piece verified before the kill is still verified (resume data +
            # the journal); at most the pieces written since the last report are new.
            assert half["verified"] >= verified_at_kill, (half, verified_at_kill)
            # Only pieces that no record covered were hashed.
            assert half["hashed"] < half_meta.payload_length - verified_at_kill + 4 * half_meta.piece_length, half
            await second.wait(lambda s: s["half"]["progress"] == 1.0, "the download's end")
            sent = seeder.torrent(sid).uploaded - sent_before
            missing = half_meta.payload_length - half["verified"]
            # Endgame may ask for a few blocks twice; nothing verified comes again.
            assert sent <= missing + 8 * 16384, (sent, missing)
            print(f"restart figures: verified at the last report before SIGKILL {verified_at_kill} B; after the "
                  f"restart's check {half['verified']} B, of which it hashed {half['hashed']} B (whole torrent "
                  f"{half_meta.payload_length} B); received afterwards {sent} B for {missing} B missing; paused and "
                  f"seeding torrents hashed {restored['paused']['hashed']} B and {restored['seeding']['hashed']} B")
        finally:
            for proc in (first, second):
                if proc is not None and proc.proc.poll() is None:
                    proc.stop()
            await seeder.close()

    run(main(), timeout=240)
    assert same_tree(half_seed / "half", tmp_path / "data" / "half")
