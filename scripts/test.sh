#!/usr/bin/env bash
# The whole default test suite (unit, CLI, DICOM, MRML on slicer-core) plus the ruff check.
# Extra arguments go to pytest, e.g. scripts/test.sh -k phantom, or -m slow for reproductions.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/env.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
