"""The selector picks compiled modules when built and twins when asked."""

from __future__ import annotations

import os
import subprocess
import sys

from torrent.core import speedups

COMPILED_MODULES = ("bitfield", "hashing", "rc4")


def _run(code: str, **env: str) -> str:
    full_env = {k: v for k, v in os.environ.items() if k != speedups.PURE_ENV}
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full_env, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_compiled_modules_are_built_when_the_test_command_requires_them() -> None:
    # scripts/test.sh sets TORRENT_REQUIRE_SPEEDUPS=1: a silent build failure must fail CI.
    if os.environ.get("TORRENT_REQUIRE_SPEEDUPS") == "1":
        for name in COMPILED_MODULES:
            speedups.compiled_module(name)
    status = _run("from torrent.core import speedups; print(speedups.all_compiled())")
    assert status == str(all(_importable(m) for m in COMPILED_MODULES))


def _importable(name: str) -> bool:
    try:
        speedups.compiled_module(name)
    except ImportError:
        return False
    return True


def test_env_var_forces_every_twin() -> None:
    out = _run(
        "from torrent.core import speedups, hashing, bitfield, rc4;"
        "print(hashing.sha1 is hashing.py_sha1, bitfield.Bitfield is bitfield.PyBitfield, rc4.RC4 is rc4.PyRC4,"
        " sorted(speedups.status().values()))",
        TORRENT_PURE_PYTHON="1",
    )
    assert out.startswith("True True True")
    assert "compiled" not in out.split(" ", 3)[3].replace("(TORRENT_PURE_PYTHON is set)", "")


def test_rc4_uses_the_compiled_class() -> None:
    # The test command always builds _speedups (root conftest.py), so the selector must pick it.
    out = _run("from torrent.core import rc4, speedups; print(rc4.RC4.__module__, speedups.status()['rc4'])")
    assert out == "_speedups.rc4 compiled"


def test_version_reports_the_active_implementation() -> None:
    compiled = _run("from torrent.cli.main import version_text; print(version_text())")
    pure = _run("from torrent.cli.main import version_text; print(version_text())", TORRENT_PURE_PYTHON="1")
    assert "speedups: pure Python" in pure
    assert "TORRENT_PURE_PYTHON is set" in pure
    if all(_importable(m) for m in COMPILED_MODULES):
        assert "speedups: compiled (Cython)" in compiled
