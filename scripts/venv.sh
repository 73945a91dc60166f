# Sourced by demo.sh and test.sh: make .venv and install the package into it
# (editable, which compiles _speedups/*.pyx in place). $1: pip extras, e.g. "[test]".
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q --prefer-binary -e ".${1:-}"  # a wheel over a newer sdist (atheris needs clang to build)
