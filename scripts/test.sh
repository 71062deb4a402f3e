#!/usr/bin/env bash
# The whole default test suite (unit, CLI, DICOM, MRML on slicer-core) plus the ruff check.
# Extra arguments go to pytest, e.g. scripts/test.sh -k phantom, or -m slow for reproductions.
# The full run (no arguments) first repeats the I/O tests under the Python stacks 3D Slicer
# bundles (scripts/test_stacks.sh); AUTOCTV_STACKS=0 leaves them out, AUTOCTV_STACKS=1 adds
# them to a run with arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/env.sh
.venv/bin/ruff check .
stack_status=0
if [ "${AUTOCTV_STACKS:-auto}" = 1 ] || { [ "${AUTOCTV_STACKS:-auto}" = auto ] && [ $# = 0 ]; }; then
  bash scripts/test_stacks.sh || stack_status=$?
fi
status=0
.venv/bin/python -m pytest "$@" || status=$?
if [ "$stack_status" != 0 ]; then
  echo "autoctv: the I/O tests failed under a Slicer Python stack (scripts/test_stacks.sh)" >&2
  exit "$stack_status"
fi
exit "$status"
