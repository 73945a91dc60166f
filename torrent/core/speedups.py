"""Choose between a compiled ``_speedups`` module and its pure-Python twin.

One call per pair, made at import time by the twin's own module, e.g.
``Bitfield = speedups.select("bitfield", "Bitfield", PyBitfield)``. Callers
import only that module, so the choice is made in one place and reported by
``torrent --version``.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any, TypeVar

PURE_ENV = "TORRENT_PURE_PYTHON"

T = TypeVar("T")

# module name -> "compiled" or "python (<why>)"; filled by select().
_status: dict[str, str] = {}


def pure_forced() -> bool:
    """True when the user asked for the pure-Python twins."""
    return os.environ.get(PURE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def compiled_module(name: str) -> ModuleType:
    """Import ``_speedups.<name>``; raises ImportError if it was not built."""
    return importlib.import_module(f"_speedups.{name}")


def select(module: str, attr: str, twin: T) -> T:
    """Return ``_speedups.<module>.<attr>`` if usable, else ``twin``."""
    if pure_forced():
        _status[module] = f"python ({PURE_ENV} is set)"
        return twin
    try:
        chosen: Any = getattr(compiled_module(module), attr)
    except (ImportError, AttributeError) as exc:
        _status[module] = f"python (compiled module unavailable: {exc})"
        return twin
    _status[module] = "compiled"
    return chosen


def status() -> dict[str, str]:
    """Which implementation each hot-path module uses, for ``--version``."""
    # Importing the selectors fills _status; keep this list in step with them.
    from torrent.core import bitfield, hashing, rc4  # noqa: F401

    return dict(_status)


def all_compiled() -> bool:
    return all(v == "compiled" for v in status().values())
