"""One malloc arena for every thread of a CLI process (torrent/core/memory.py)."""

from __future__ import annotations

import subprocess
import sys

# Four threads allocate at the same time, each of which glibc would give an arena of its own; then
# malloc_stats() prints one "Arena N:" block per arena in use.
PROBE = """
import ctypes, sys, threading
from torrent.core.memory import limit_malloc_arenas
if sys.argv[1] == "limited":
    assert limit_malloc_arenas()
barrier = threading.Barrier(4)
def work():
    barrier.wait()
    keep = [bytearray(100_000) for _ in range(50)]
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL(None).malloc_stats()
"""


def arenas(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return sum(1 for line in result.stderr.splitlines() if line.startswith("Arena "))


def test_threads_that_allocate_at_once_share_one_arena_once_limited() -> None:
    assert arenas("default") > 1  # the probe does make glibc spread threads over arenas
    assert arenas("limited") == 1


def test_the_cli_limits_the_arenas_before_it_starts_any_thread() -> None:
    probe = ("import ctypes, torrent.cli.main as m, threading\n"
             "m.limit_malloc_arenas = (lambda f: lambda *a: print('limited', threading.active_count()) or f(*a))"
             "(m.limit_malloc_arenas)\n"
             "m.main(['--version'])\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "limited 1" in result.stdout
