#!/usr/bin/env bash
# CPU speed anchor ratios: AutoCTV beside MONAI (and optionally nnU-Net v2) in one session, on the
# same 512x512x100 test CT, timed the same way (GNU time + the anchors' runwatch.py), with the
# same THP_MEM_ALLOC_ENABLE setting for every tool.
#
# Usage (from anywhere; takes ~5 minutes without nnU-Net, ~10 with it, plus the first setup):
#   bash benchmarks/run_anchors.sh [--with-nnunet] [--runs N] [--model FILE] [--threads N]
#
# What it runs, interleaved per round so that machine noise hits every tool alike:
#   monai_res2_thp{0,1}   MONAI UNet tutorial config (the anchors' monai_cpu_baseline.py)
#   monai_res0_thp{0,1}   MONAI UNet defaults
#   autoctv_plain_thp{0,1}, autoctv_mc20_thp{0,1}   `autoctv predict` (bundled or --model)
#   nnunet_notta_thp{0,1} (with --with-nnunet) nnUNetv2_predict --disable_tta
# Results: benchmarks/results/anchor_ratio.{json,md} (wall-time ratios AutoCTV / anchor, medians).
#
# The anchors live in the shared folder beside the repository (../shared/anchors); their driver
# nnunet_cpu_timing.sh builds the anchor venv (monai, nnunetv2) and the test volume under ROOT
# (default ~/.cache/nnunet_anchor). Nothing of the anchors is copied into this repository.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ANCHORS="${ANCHORS:-$REPO/../shared/anchors}"
ROOT="${ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/nnunet_anchor}"
TIMEOUT_S="${TIMEOUT_S:-1500}"
OURS_PY="${OURS_PY:-$REPO/.venv/bin/python}"
RUNS=1
WITH_NNUNET=0
MODEL_ARGS=()
THREAD_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --with-nnunet) WITH_NNUNET=1 ;;
    --runs) RUNS="$2"; shift ;;
    --model) MODEL_ARGS=(--model "$2"); shift ;;
    --threads) THREAD_ARGS=(--threads "$2"); shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ -d "$ANCHORS" ] || { echo "anchor scripts not found in $ANCHORS (set ANCHORS=...)" >&2; exit 2; }
[ -x "$OURS_PY" ] || { echo "AutoCTV's Python $OURS_PY not found (set OURS_PY=...)" >&2; exit 2; }

# 1. Anchor environment and test volume (skipped by the driver when they exist).
steps=(setup volume)
[ "$WITH_NNUNET" = 1 ] && steps+=(plan)
ROOT="$ROOT" bash "$ANCHORS/nnunet_cpu_timing.sh" "${steps[@]}"
ANCHOR_PY="$ROOT/venv/bin/python"
TEST_IMG="$ROOT/test_in/pelvis_test_0000.nii.gz"
OUT="$ROOT/out_autoctv_ratio"
mkdir -p "$OUT" "$ROOT/pred_ratio"
export nnUNet_raw="$ROOT/raw" nnUNet_preprocessed="$ROOT/preprocessed" nnUNet_results="$ROOT/results"

# 2. timed NAME THP CMD...: same wrapper as the anchors (GNU time around runwatch.py).
timed() {
  local name="$1" thp="$2"; shift 2
  echo "=== $name (THP_MEM_ALLOC_ENABLE=$thp): $*"
  THP_MEM_ALLOC_ENABLE="$thp" /usr/bin/time -v -o "$OUT/time_$name.txt" \
    "$OURS_PY" "$ANCHORS/runwatch.py" --log "$OUT/log_$name.txt" \
    --summary "$OUT/sum_$name.json" --timeout "$TIMEOUT_S" -- "$@" || echo "($name exited $?)"
}

for run in $(seq 1 "$RUNS"); do
  for thp in 0 1; do
    timed "monai_res2_thp${thp}_run${run}" "$thp" "$ANCHOR_PY" "$ANCHORS/monai_cpu_baseline.py" \
      "$TEST_IMG" "$ROOT/pred_ratio/monai_res2.nii.gz" --num_res_units 2 --norm batch
    timed "monai_res0_thp${thp}_run${run}" "$thp" "$ANCHOR_PY" "$ANCHORS/monai_cpu_baseline.py" \
      "$TEST_IMG" "$ROOT/pred_ratio/monai_res0.nii.gz" --num_res_units 0 --norm instance
    timed "autoctv_plain_thp${thp}_run${run}" "$thp" "$OURS_PY" -m AutoCTVLib.cli.main predict \
      "$TEST_IMG" -o "$ROOT/pred_ratio/autoctv_plain" --device cpu --format nifti \
      --progress none --overwrite "${MODEL_ARGS[@]}" "${THREAD_ARGS[@]}"
    timed "autoctv_mc20_thp${thp}_run${run}" "$thp" "$OURS_PY" -m AutoCTVLib.cli.main predict \
      "$TEST_IMG" -o "$ROOT/pred_ratio/autoctv_mc20" --device cpu --format nifti \
      --progress none --overwrite --uncertainty 20 "${MODEL_ARGS[@]}" "${THREAD_ARGS[@]}"
    if [ "$WITH_NNUNET" = 1 ]; then
      rm -rf "$ROOT/pred_ratio/nnunet"
      timed "nnunet_notta_thp${thp}_run${run}" "$thp" "$ROOT/venv/bin/nnUNetv2_predict" \
        -i "$ROOT/test_in" -o "$ROOT/pred_ratio/nnunet" -d 990 -c 3d_fullres -f 0 -device cpu \
        --disable_tta
    fi
  done
done

# 3. Ratios (medians over runs) into benchmarks/results/anchor_ratio.{json,md}.
PYTHONPATH="$REPO" "$OURS_PY" - "$OUT" "$REPO/benchmarks" <<'PY'
import json
import statistics
import sys
from pathlib import Path

out, benchmarks = Path(sys.argv[1]), Path(sys.argv[2])
sys.path.insert(0, str(benchmarks))
from common import write_results  # noqa: E402

walls, memory = {}, {}
for summary in sorted(out.glob("sum_*_run*.json")):
    name = summary.stem.removeprefix("sum_").rsplit("_run", 1)[0]
    data = json.loads(summary.read_text())
    if data["rc"] != 0 or data["timed_out"]:
        print(f"skipping {summary.name}: rc={data['rc']} timed_out={data['timed_out']}")
        continue
    walls.setdefault(name, []).append(data["wall_s"])
    memory.setdefault(name, []).append(data["peak_tree_rss_MiB"])
median = {name: statistics.median(values) for name, values in walls.items()}
rows, ratios = [], {}
for thp in ("0", "1"):
    for ours in ("autoctv_plain", "autoctv_mc20"):
        mine = median.get(f"{ours}_thp{thp}")
        for anchor in ("monai_res2", "monai_res0", "nnunet_notta"):
            theirs = median.get(f"{anchor}_thp{thp}")
            if mine is None or theirs is None:
                continue
            ratio = round(mine / theirs, 2)
            ratios[f"{ours} / {anchor}, THP={thp}"] = ratio
            rows.append([ours, anchor, thp, f"{mine:.1f}", f"{theirs:.1f}", f"{ratio:.2f}"])
write_results(
    benchmarks / "results" / "anchor_ratio",
    "AutoCTV vs CPU anchors (same session, same test CT, wall time)",
    ["AutoCTV", "anchor", "THP", "AutoCTV wall s", "anchor wall s", "ratio"],
    rows,
    {"wall_s": walls, "peak_tree_rss_MiB": memory, "median_wall_s": median, "ratios": ratios},
)
print(json.dumps(ratios, indent=1))
PY
