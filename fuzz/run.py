"""Run fuzz targets under libFuzzer (atheris) and report executions and crashes per target.

    python -m fuzz.run [TARGET ...] --runs N [--jobs J] [--timeout S] [--rss-limit-mb M]
                       [--crash-dir DIR] [--corpus-root DIR] [--work-dir DIR] [--grow-corpus]

Each target runs in its own process on the pure-Python twins (``TORRENT_PURE_PYTHON=1``: atheris
instruments Python, not Cython) with ``torrent`` and ``bencode.py`` instrumented for coverage, under
``-rss_limit_mb`` and a per-input ``-timeout``; ``--jobs`` targets run at once. A crash is an exception a
target lets through, an input running past the timeout, or memory past the limit: libFuzzer stops that
target and writes the input into the crash directory, which the report names. Inputs found new are
kept in a temporary copy of the corpus unless ``--grow-corpus`` says to add them to ``fuzz/corpus``.
Exit status: 0 when no target crashed, 1 otherwise, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "fuzz" / "corpus"
INSTRUMENTED = ("torrent", "bencodepy")
_ARTIFACT = re.compile(r"Test unit written to (\S+)")
_EXECUTED = re.compile(r"stat::number_of_executed_units: (\d+)")
_PROGRESS = re.compile(r"^#(\d+)\s", re.MULTILINE)
_KINDS = ("crash", "timeout", "oom", "leak")


@dataclass(slots=True)
class Result:
    target: str
    executions: int
    seconds: float
    returncode: int
    artifacts: list[str] = field(default_factory=list)  # crashing inputs written
    reason: str = ""  # the first line saying why it stopped, when it crashed
    log: str = ""

    @property
    def crashes(self) -> int:
        # A target that died without libFuzzer writing an input (it failed to start) counts as one.
        return len(self.artifacts) or int(self.returncode != 0)

    @property
    def rate(self) -> float:
        return self.executions / self.seconds if self.seconds > 0 else 0.0


# Linux carries a process's peak RSS, which libFuzzer's -rss_limit_mb reads, across exec, and a child
# starts with its parent's: forked from a large process (pytest after the whole suite) a target would be
# "out of memory" at once. A small launcher starts it instead, from its own small memory.
_LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def run_target(name: str, *, runs: int, timeout: int, rss_limit_mb: int, crash_dir: Path, work_dir: Path,
               corpus_root: Path = CORPUS, grow_corpus: bool = False, max_len: int = 4096) -> Result:
    """Fuzz one target for ``runs`` executions in a child process and read its report."""
    seeds = corpus_root / name
    seeds.mkdir(parents=True, exist_ok=True)
    if grow_corpus:
        corpora = [seeds]  # libFuzzer writes new inputs into the first directory
    else:
        scratch = work_dir / "corpus" / name
        scratch.mkdir(parents=True, exist_ok=True)
        corpora = [scratch, seeds]
    log_path = work_dir / f"{name}.log"
    command = [sys.executable, "-c", _LAUNCHER, sys.executable, "-m", "fuzz.run", "--child", name, "--",
               f"-runs={runs}", f"-timeout={timeout}", f"-rss_limit_mb={rss_limit_mb}", f"-max_len={max_len}",
               f"-artifact_prefix={crash_dir}{os.sep}{name}-", "-print_final_stats=1", *map(str, corpora)]
    env = dict(os.environ, TORRENT_PURE_PYTHON="1", PYTHONPATH=os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    started = time.monotonic()
    with open(log_path, "w") as log:
        returncode = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL).returncode
    seconds = time.monotonic() - started
    text = log_path.read_text(errors="replace")
    executed = _EXECUTED.findall(text)
    progress = _PROGRESS.findall(text)
    executions = int(executed[-1]) if executed else int(progress[-1]) if progress else 0
    artifacts = [p for p in _ARTIFACT.findall(text) if Path(p).name.startswith(tuple(f"{name}-{k}" for k in _KINDS))]
    return Result(name, executions, seconds, returncode, artifacts, _reason(text) if returncode else "", str(log_path))


def _reason(log: str) -> str:
    """The line of a libFuzzer log that says why the target stopped."""
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if "Uncaught Python exception" in line and i + 1 < len(lines):
            return lines[i + 1].strip()
        if "ERROR: libFuzzer:" in line:
            return line.split("ERROR: libFuzzer:", 1)[1].strip()
    return next((line for line in reversed(lines) if line.strip()), "no output")


def format_table(results: Sequence[Result]) -> str:
    rows = [("target", "executions", "crashes", "seconds", "exec/s")]
    rows += [(r.target, f"{r.executions:,}", str(r.crashes), f"{r.seconds:.0f}", f"{r.rate:,.0f}") for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["| " + " | ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(row, widths))) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in
                                   enumerate(widths)) + "|")
    return "\n".join(lines)


def run(names: Sequence[str], *, runs: int, jobs: int = 1, timeout: int = 10, rss_limit_mb: int = 512,
        crash_dir: Path | None = None, corpus_root: Path = CORPUS, grow_corpus: bool = False,
        work_dir: Path | None = None) -> tuple[list[Result], Path]:
    """Fuzz ``names`` (``jobs`` at a time); the results in the order given and the crash directory.

    Scratch corpora and logs go to ``work_dir``, by default a temporary directory removed when nothing
    crashed."""
    from fuzz.targets import find  # imports torrent: only here, never in the instrumented child's parent

    max_lens = {name: find(name).max_len for name in names}
    temporary = work_dir is None
    work_dir = Path(tempfile.mkdtemp(prefix="torrent-fuzz-")) if work_dir is None else Path(work_dir)
    crash_dir = Path(crash_dir) if crash_dir is not None else work_dir / "crashes"
    crash_dir.mkdir(parents=True, exist_ok=True)

    def one(name: str) -> Result:
        return run_target(name, runs=runs, timeout=timeout, rss_limit_mb=rss_limit_mb, crash_dir=crash_dir,
                          work_dir=work_dir, corpus_root=corpus_root, grow_corpus=grow_corpus,
                          max_len=max_lens[name])

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = list(pool.map(one, names))
    shutil.rmtree(work_dir / "corpus", ignore_errors=True)
    if temporary and not any(r.crashes for r in results):
        shutil.rmtree(work_dir)
    return results, crash_dir


def main(argv: Sequence[str] | None = None) -> int:
    from fuzz.targets import TARGETS

    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", metavar="TARGET", help=f"default: all ({', '.join(TARGETS)})")
    parser.add_argument("--runs", type=int, required=True, help="executions per target")
    parser.add_argument("--jobs", type=int, default=1, help="targets fuzzed at once (default 1)")
    parser.add_argument("--timeout", type=int, default=10, help="seconds one input may take (default 10)")
    parser.add_argument("--rss-limit-mb", type=int, default=512, help="memory limit per target (default 512)")
    parser.add_argument("--crash-dir", type=Path, help="where crashing inputs go (default: a temporary directory)")
    parser.add_argument("--corpus-root", type=Path, default=CORPUS, help="seed corpora, one directory per target")
    parser.add_argument("--work-dir", type=Path, help="scratch corpora and logs (default: a temporary directory, "
                        "removed when nothing crashed)")
    parser.add_argument("--grow-corpus", action="store_true", help="add new interesting inputs to the corpus")
    args = parser.parse_args(argv)
    from fuzz.targets import find

    try:
        names = [find(name).name for name in args.targets] or list(TARGETS)
    except KeyError as exc:
        parser.error(str(exc.args[0]))
    results, crash_dir = run(names, runs=args.runs, jobs=args.jobs, timeout=args.timeout,
                             rss_limit_mb=args.rss_limit_mb, crash_dir=args.crash_dir,
                             corpus_root=args.corpus_root, grow_corpus=args.grow_corpus, work_dir=args.work_dir)
    print(format_table(results))
    crashed = [r for r in results if r.crashes]
    for r in crashed:
        print(f"{r.target}: {r.reason}; log {r.log}")
        for artifact in r.artifacts:
            print(f"  input: {artifact}")
    if crashed:
        print(f"crashing inputs in {crash_dir}")
    return 1 if crashed else 0


def child(name: str, libfuzzer_args: Sequence[str]) -> None:
    """Inside the fuzzing process: instrument the decoders, then hand the target to libFuzzer."""
    os.environ["TORRENT_PURE_PYTHON"] = "1"
    import atheris

    with atheris.instrument_imports(include=list(INSTRUMENTED)):
        from fuzz.targets import find

        target = find(name)
    atheris.Setup([sys.argv[0], *libfuzzer_args], target.run)
    atheris.Fuzz()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[4:] if sys.argv[3:4] == ["--"] else sys.argv[3:])
    else:
        sys.exit(main())
