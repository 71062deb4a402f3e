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
# contours, HDF5 datasets from DICOM-RT), the torch-free numerics before and after the network
# (preprocessing, metrics, augmentation), the CLI's error path, the compatibility module, the
# Python-version checks, the Slicer module's dependency plan (AutoCTVLib.dependencies), and the
# DICOM reader tests (blank UIDs, transfer syntaxes, gantry tilt, multi-frame CT, a scanner-style
# series; those that predict need torch and skip). MRML tests need slicer-core, which is not part
# of these stacks (Slicer brings its own MRML), so they are deselected.
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
  Testing/test_dataset_build.py
  Testing/test_preprocess.py
  Testing/test_metrics.py
  Testing/test_augment.py
  Testing/test_cli_main.py
  Testing/test_compat.py
  Testing/test_python_versions.py
  Testing/test_dependencies.py
  Testing/test_dicom_blank_uids.py
  Testing/test_dicom_transfer_syntaxes.py
  Testing/test_dicom_tilt.py
  Testing/test_dicom_multiframe.py
  Testing/test_dicom_real_scanner.py
  Testing/test_dicom_repaired_outputs.py
  Testing/test_quiet_decoding.py
)
# Light dependencies shared by every stack: the compressed-DICOM decoders the package declares
# (pylibjpeg and its plugins) and the test-only encoders of the reader tests (dcm2niix here,
# python-gdcm per stack below: its newest releases ship no Python 3.9 wheel). highdicom is only
# a second SEG reader for the tests (the writer needs pydicom alone); its 0.22 release, the last
# for pydicom 2.x, runs on numpy 1.x only, so it goes into the Python 3.9 stack alone.
COMMON_DEPS=(
  "scipy>=1.10"
  "SimpleITK>=2.3"
  "h5py>=3.8"
  "safetensors>=0.4"
  "slicerio>=1.0"
  "pytest>=7.4"
  "pytest-timeout>=2.2"
  "pylibjpeg>=2.0"
  "pylibjpeg-libjpeg>=2.1"
  "pylibjpeg-openjpeg>=2.3"
  "pylibjpeg-rle>=2.0"
  "dcm2niix>=1.0.20220720"
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

# prepare_stack NAME PYTHON_MINOR "PINNED SPECS": create or refresh the stack's venv.
prepare_stack() {
  local name="$1" minor="$2" pins="$3" python venv stamp want
  python="$(find_python "$minor")"
  if [ -z "$python" ]; then
    echo "autoctv: stack $name skipped: no CPython $minor found under $(pyenv_root)/versions" >&2
    return 2
  fi
  venv="$STACK_DIR/$name"
  stamp="$venv/.autoctv-stack-stamp"
  want="$("$python" -c 'import sys; print(sys.version.split()[0])') $pins"
  want="$want ${COMMON_DEPS[*]}"
  if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  echo "autoctv: preparing stack $name in $venv ($python)" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv" || return 1
  # shellcheck disable=SC2086 # $pins is a list of requirement specifiers
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    $pins "${COMMON_DEPS[@]}" || return 1
  if "$venv/bin/python" -c 'import torch' >/dev/null 2>&1; then
    echo "autoctv: stack $name must not contain torch" >&2
    return 1
  fi
  echo "$want" >"$stamp"
}

# run_stack NAME PYTHON_MINOR "PINNED SPECS" [pytest args]
run_stack() {
  local name="$1" minor="$2" pins="$3" status started
  shift 3
  started=$SECONDS
  prepare_stack "$name" "$minor" "$pins"
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
run_stack py39-pydicom24 3.9 \
  "numpy==1.26.4 pydicom==2.4.4 highdicom==0.22.0 python-gdcm>=3.0.22,<=3.2.2" "$@" || failed=1
run_stack py312-pydicom24 3.12 \
  "numpy==2.0.2 pydicom==2.4.4 python-gdcm>=3.0.22" "$@" || failed=1
exit "$failed"
