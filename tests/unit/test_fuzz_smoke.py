"""The fuzz harness (fuzz/): every decoder's target survives a short libFuzzer run through the same runner
the long runs use, planted bugs (an exception, a hang, memory growth) are each reported as a crash with
the input that caused it, and new inputs reach the repository's corpus only when asked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.run import main, run
from fuzz.targets import TARGETS

SMOKE_RUNS = 2000


def test_every_target_runs_its_executions_without_a_crash(tmp_path: Path) -> None:
    results, _ = run(list(TARGETS), runs=SMOKE_RUNS, jobs=2, work_dir=tmp_path)
    assert [r.target for r in results] == list(TARGETS)
    for r in results:
        assert (r.crashes, r.returncode) == (0, 0), f"{r.target}: {r.reason}\n{Path(r.log).read_text()[-3000:]}"
        assert r.executions == SMOKE_RUNS, r.target
    assert not any((tmp_path / "crashes").iterdir())


@pytest.mark.parametrize(("name", "planted", "reason"), [
    ("planted-crash", b"CRASH", "RuntimeError: planted crash"),
    ("planted-hang", b"HANG", "timeout"),
    ("planted-oom", b"OOM", "out-of-memory"),
])
def test_a_planted_bug_is_a_crash_and_its_input_is_saved(tmp_path: Path, name: str, planted: bytes,
                                                         reason: str) -> None:
    seeds = tmp_path / "corpus" / name
    seeds.mkdir(parents=True)
    (seeds / "planted").write_bytes(planted)
    results, crash_dir = run([name], runs=1000, timeout=1, corpus_root=tmp_path / "corpus",
                             crash_dir=tmp_path / "crashes", work_dir=tmp_path / "work")
    [result] = results
    assert result.crashes == 1 and result.returncode != 0
    assert reason in result.reason
    assert [Path(a).parent for a in result.artifacts] == [crash_dir]
    assert Path(result.artifacts[0]).read_bytes() == planted


def test_the_command_exits_non_zero_and_names_the_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seeds = tmp_path / "corpus" / "planted-crash"
    seeds.mkdir(parents=True)
    (seeds / "planted").write_bytes(b"CRASH")
    (seeds.parent / "lsd").mkdir()
    argv = ["lsd", "planted-crash", "--runs", "300", "--jobs", "2", "--corpus-root", str(tmp_path / "corpus"),
            "--crash-dir", str(tmp_path / "crashes"), "--work-dir", str(tmp_path / "work")]
    assert main(argv) == 1
    out = capsys.readouterr().out
    assert "| lsd " in out and "| planted-crash " in out
    assert f"crashing inputs in {tmp_path / 'crashes'}" in out
    assert main(argv[:1] + argv[2:]) == 0


def test_new_inputs_stay_out_of_the_corpus_unless_it_is_to_grow(tmp_path: Path) -> None:
    seeds = tmp_path / "corpus" / "lsd"
    seeds.mkdir(parents=True)
    (seeds / "seed").write_bytes(b"BT-SEARCH * HTTP/1.1\r\nPort: 6881\r\n\r\n")
    run(["lsd"], runs=SMOKE_RUNS, corpus_root=tmp_path / "corpus", work_dir=tmp_path / "a")
    assert [p.name for p in seeds.iterdir()] == ["seed"]
    run(["lsd"], runs=SMOKE_RUNS, corpus_root=tmp_path / "corpus", work_dir=tmp_path / "b", grow_corpus=True)
    assert len(list(seeds.iterdir())) > 1


_FROM_A_LARGE_PROCESS = r"""
import sys
from pathlib import Path
from fuzz.run import run
held = bytearray(700 << 20)
held[::4096] = b"\1" * len(held[::4096])  # resident: pytest after the whole suite is this large
root = Path(sys.argv[1])
(root / "corpus" / "planted-hang").mkdir(parents=True)
(root / "corpus" / "planted-hang" / "seed").write_bytes(b"HANG")
[result], _ = run(["planted-hang"], runs=1000, timeout=1, corpus_root=root / "corpus", crash_dir=root / "c",
                  work_dir=root / "w")
print(result.reason)
"""


def test_a_target_started_from_a_large_process_has_its_own_memory_figure(tmp_path: Path) -> None:
    """Linux carries the peak RSS libFuzzer checks across exec: started straight from a 700 MiB parent,
    the planted hang was reported "out-of-memory (used: 722Mb; limit: 512Mb)" (as on CI, late in the suite)."""
    done = subprocess.run([sys.executable, "-c", _FROM_A_LARGE_PROCESS, str(tmp_path)], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr
    assert "timeout" in done.stdout and "out-of-memory" not in done.stdout, done.stdout
