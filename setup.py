"""Build the Cython hot path; fall back to the pure-Python twins if we cannot.

``TORRENT_PURE_PYTHON=1`` at build time skips compilation entirely. Any
failure (no Cython, no compiler, no OpenSSL headers) is reported and the
package installs without that module; ``torrent --version`` then says which
implementation is active.
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

PURE = os.environ.get("TORRENT_PURE_PYTHON", "").strip().lower() not in ("", "0", "false", "no")

COMPILE_ARGS = ["-O3", "-Wno-deprecated-declarations"]


MODULES = {
    "bitfield": {},
    # OpenSSL's SHA-1 (Debian: libssl-dev) plus the multi-buffer SHA-NI kernel.
    "hashing": {"libraries": ["crypto"], "depends": ["_speedups/sha1_multi.h"], "include_dirs": ["_speedups"]},
    "rc4": {},
}

DIRECTIVES = {
    "language_level": "3",
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "embedsignature": True,
}


def extensions() -> list[Extension]:
    if PURE:
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("torrent: Cython not available; installing pure-Python twins only", file=sys.stderr)
        return []
    built = []
    for name, options in MODULES.items():
        ext = Extension(f"_speedups.{name}", [f"_speedups/{name}.pyx"],
                        extra_compile_args=COMPILE_ARGS, **options)
        try:
            built += cythonize([ext], compiler_directives=DIRECTIVES, quiet=True)
        except Exception as exc:  # a .pyx that fails to translate leaves its twin in charge
            print(f"torrent: could not cythonize {ext.name} ({exc}); its pure-Python twin will be used",
                  file=sys.stderr)
    return built


class OptionalBuildExt(build_ext):
    """Build each extension on its own; a failure leaves its twin in charge."""

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # compiler or linker missing, headers absent
            print(f"torrent: could not build {ext.name} ({exc}); its pure-Python twin will be used",
                  file=sys.stderr)


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
