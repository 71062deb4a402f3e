#!/usr/bin/env bash
# Run the file and DICOM I/O tests under the Python stacks that 3D Slicer bundles:
#   py39-pydicom24   CPython 3.9  + pydicom 2.4.4 + numpy 1.26.4   (Slicer 5.8)
#   py312-pydicom24  CPython 3.12 + pydicom 2.4.4 + numpy 2.0.2    (Slicer 5.10)
# (Slicer 5.12's pydicom 3 + numpy 2 stack is what the main .venv runs.)
#
# Each stack gets its own virtual environment under .venv-stacks/ with the light dependencies
# only: no torch (tests that need it skip there with a reason), and the repository is put on
# PYTHONPATH instead of being installed, so pip never resolves the package's torch dependency.
# A stamp file makes re-runs no-ops until the interpreter or a pinned dependency changes. The
# interpreters come from pyenv (`pyenv root`, else ~/.pyenv); a stack whose interpreter is
# missing is reported and skipped.
#
# Usage: scripts/test_stacks.sh [extra pytest arguments]
set -uo pipefail
cd "$(dirname "$0")/.."

STACK_DIR=.venv-stacks
# The I/O tests (RTSTRUCT, DICOM CT round trip, DICOM SEG, CT reader, seg.nrrd, image writers,
# contours), the compatibility module and the Python-version checks. MRML tests need slicer-core,
# which is not part of these stacks (Slicer brings its own MRML), so they are deselected.
STACK_TESTS=(
  Testing/test_rtstruct.py
  Testing/test_dicom_ct_roundtrip.py
  Testing/test_dicom_seg.py
  Testing/test_dicom_color.py
  Testing/test_ct_reader_errors.py
  Testing/test_seg_nrrd.py
  Testing/test_image_writers.py
  Testing/test_contours.py
  Testing/test_volume.py
  Testing/test_atomic.py
  Testing/test_compat.py
  Testing/test_python_versions.py
)
# Light dependencies shared by every stack (highdicom 0.22 is the last release for pydicom 2.x).
COMMON_DEPS=(
  "scipy>=1.10"
  "SimpleITK>=2.3"
  "h5py>=3.8"
  "safetensors>=0.4"
  "highdicom==0.22.0"
  "slicerio>=1.0"
  "pytest>=7.4"
  "pytest-timeout>=2.2"
)

pyenv_root() {
  if command -v pyenv >/dev/null 2>&1; then
    pyenv root
  else
    echo "${PYENV_ROOT:-$HOME/.pyenv}"
  fi
}

# The newest installed pyenv interpreter of a minor version, e.g. find_python 3.9.
find_python() {
  local root
  root="$(pyenv_root)"
  find "$root/versions" -maxdepth 3 -path "$root/versions/$1.[0-9]*/bin/python$1" \
    \( -type f -o -type l \) 2>/dev/null | sort -V | tail -n 1
}

# prepare_stack NAME PYTHON_MINOR NUMPY_SPEC PYDICOM_SPEC: create or refresh the stack's venv.
prepare_stack() {
  local name="$1" minor="$2" numpy_spec="$3" pydicom_spec="$4" python venv stamp want
  python="$(find_python "$minor")"
  if [ -z "$python" ]; then
    echo "autoctv: stack $name skipped: no CPython $minor found under $(pyenv_root)/versions" >&2
    return 2
  fi
  venv="$STACK_DIR/$name"
  stamp="$venv/.autoctv-stack-stamp"
  want="$("$python" -c 'import sys; print(sys.version.split()[0])') $numpy_spec $pydicom_spec"
  want="$want ${COMMON_DEPS[*]}"
  if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  echo "autoctv: preparing stack $name in $venv ($python)" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv" || return 1
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip || return 1
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "$numpy_spec" "$pydicom_spec" "${COMMON_DEPS[@]}" || return 1
  if "$venv/bin/python" -c 'import torch' >/dev/null 2>&1; then
    echo "autoctv: stack $name must not contain torch" >&2
    return 1
  fi
  echo "$want" >"$stamp"
}

# run_stack NAME PYTHON_MINOR NUMPY_SPEC PYDICOM_SPEC [pytest args]
run_stack() {
  local name="$1" minor="$2" numpy_spec="$3" pydicom_spec="$4" status started
  shift 4
  started=$SECONDS
  prepare_stack "$name" "$minor" "$numpy_spec" "$pydicom_spec"
  status=$?
  if [ "$status" = 2 ]; then
    return 0
  elif [ "$status" != 0 ]; then
    echo "autoctv: stack $name could not be prepared" >&2
    return 1
  fi
  echo "autoctv: stack $name: $("$STACK_DIR/$name/bin/python" -c \
    'import sys, numpy, pydicom; print("Python", sys.version.split()[0], "numpy",
     numpy.__version__, "pydicom", pydicom.__version__)')" >&2
  PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$STACK_DIR/$name/bin/python" -m pytest -q \
    -p no:cacheprovider -m "not slow and not mrml" "${STACK_TESTS[@]}" "$@"
  status=$?
  echo "autoctv: stack $name finished in $((SECONDS - started)) s (exit $status)" >&2
  return "$status"
}

failed=0
run_stack py39-pydicom24 3.9 numpy==1.26.4 pydicom==2.4.4 "$@" || failed=1
run_stack py312-pydicom24 3.12 numpy==2.0.2 pydicom==2.4.4 "$@" || failed=1
exit "$failed"
