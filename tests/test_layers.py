"""The layer contracts in pyproject.toml ([tool.importlinter]) hold: front ends >
session > engine > peer | storage | tracker | create > codec > core, codecs import
nothing with I/O, and front ends use only the session API (DESIGN.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    if not lint_imports.exists():
        pytest.fail(f"{lint_imports} is missing: install the test extra (pip install -e '.[test]')", pytrace=False)
    # The config file is positional (import-linter 2 deprecates --config); --no-cache
    # leaves no .import_linter_cache in the work tree (building the graph takes 0.4 s).
    proc = subprocess.run([str(lint_imports), "--no-cache", "--no-logo", "pyproject.toml"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        pytest.fail(f"lint-imports exited {proc.returncode}:\n{proc.stdout}{proc.stderr}", pytrace=False)
