#!/usr/bin/env bash
# The main job on an embedded default, no internet needed: install into .venv,
# generate a sample payload, make a torrent of it and describe it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
exec .venv/bin/python -m torrent demo "$@"
