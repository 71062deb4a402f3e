#!/usr/bin/env bash
# Create or refresh the project virtual environment in .venv (idempotent).
# CPU torch is installed first so that no dependency pulls a multi-GB CUDA build; the package
# itself is installed editable with its test and optional extras. Re-runs are no-ops unless
# pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
TORCH_SPEC=${AUTOCTV_TORCH:-torch==2.13.0}
stamp="$VENV/.autoctv-env-stamp"

# dicom3tools' dciodvfy validates the DICOM objects we write (a test runs it). Install it from
# Debian's packages when we can (root, apt available); without it that test reports a skip.
if ! command -v dciodvfy >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
  && [ "$(id -u)" = 0 ]; then
  echo "autoctv: installing dicom3tools (dciodvfy) from Debian's packages" >&2
  (apt-get update -qq && apt-get install -y -qq dicom3tools >/dev/null) \
    || echo "autoctv: dicom3tools could not be installed; the dciodvfy test will be skipped" >&2
fi
# Debian's chromium runs the browser tests of the web app (Playwright drives it through
# executable_path); without it those tests report a skip.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
  && [ "$(id -u)" = 0 ]; then
  echo "autoctv: installing chromium from Debian's packages (browser tests)" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "autoctv: chromium could not be installed; the browser tests will be skipped" >&2
fi
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $TORCH_SPEC"
if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "autoctv: preparing the virtual environment in $VENV (first run takes a few minutes)" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$TORCH_SPEC"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
  -c <(echo "$TORCH_SPEC") -e ".[test,completion,plots,cli,web]"
echo "$want" > "$stamp"
