#!/usr/bin/env bash
# The main job on an embedded default: generate a phantom and run AutoCTV on it.
# Usage: scripts/demo.sh [OUT_DIR]   (default: demo_out)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/env.sh
exec .venv/bin/autoctv demo -o "${1:-demo_out}"
