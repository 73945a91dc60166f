"""Fixtures shared by ``tests/`` and ``benchmarks/`` (pytest loads this file for both).

``twin`` runs a test once with the compiled ``_speedups`` modules and once with their
pure-Python twins, ids ``cython`` / ``python`` (DESIGN.md, rule 3). It yields a
``Twin``: ``.Bitfield`` is the bitfield class, ``.hashing`` the hashing functions
(``sha1``, ``sha1_pieces``, ``sha1_many``, ``verify_pieces``, ``verify_piece``), each
loaded when first used. The ``cython`` one fails (never skips) when the compiled module
is not built: the project's test command always builds it.

``twins`` gives both by id, for a test that adds a reference of its own to the two
(``benchmarks/test_hashing_bench.py`` times a plain ``hashlib`` loop beside them).
"""

from __future__ import annotations

import os
import tempfile
from functools import cached_property
from pathlib import Path
from types import SimpleNamespace

import pytest

from torrent.bench.swarm import LOOPBACK_CONFIG
from torrent.core import hashing, speedups
from torrent.core.bitfield import PyBitfield

# Our client started by a test (``python -m torrent``) reads this config unless the test gives its own:
# peer discovery stays on 127.0.0.1 (no public DHT router, no LAN multicast, no router discovery).
_CONFIG_HOME = Path(tempfile.mkdtemp(prefix="torrent-tests-config-"))
(_CONFIG_HOME / "torrent").mkdir()
(_CONFIG_HOME / "torrent" / "config.toml").write_text(LOOPBACK_CONFIG)
os.environ["XDG_CONFIG_HOME"] = str(_CONFIG_HOME)

TWINS = ("cython", "python")
HASHING_FUNCTIONS = ("sha1", "sha1_pieces", "sha1_many", "verify_pieces", "verify_piece")


def _compiled(module: str):
    try:
        return speedups.compiled_module(module)
    except ImportError as exc:  # pragma: no cover - only when the build is broken
        pytest.fail(f"_speedups.{module} is not built ({exc}); run setup.py build_ext --inplace", pytrace=False)


class Twin:
    """One implementation of the compiled modules: ``cython`` or ``python``."""

    def __init__(self, name: str) -> None:
        assert name in TWINS, name
        self.name = name

    def __repr__(self) -> str:
        return f"Twin({self.name!r})"

    @cached_property
    def Bitfield(self) -> type:
        return _compiled("bitfield").Bitfield if self.name == "cython" else PyBitfield

    @cached_property
    def hashing(self) -> SimpleNamespace:
        if self.name == "cython":
            module = _compiled("hashing")
            return SimpleNamespace(**{f: getattr(module, f) for f in HASHING_FUNCTIONS})
        return SimpleNamespace(**{f: getattr(hashing, f"py_{f}") for f in HASHING_FUNCTIONS})


@pytest.fixture(scope="session")
def twins() -> dict[str, Twin]:
    return {name: Twin(name) for name in TWINS}


@pytest.fixture(scope="module", params=TWINS)
def twin(request: pytest.FixtureRequest, twins: dict[str, Twin]) -> Twin:
    return twins[request.param]
