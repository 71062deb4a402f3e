"""Build the phantom datasets the CTV network is trained and tested on.

Each case is a seeded phantom on a varied clinical grid (pixel spacing 0.7–1.2 mm, slice
thickness 1.25–5 mm, coverage 260–340 mm), written as a NIfTI pair and packed into an AutoCTV
HDF5 dataset by the same code a clinic uses for its own data (``build_dataset``).

Run: .venv/bin/python benchmarks/ctv_data.py --out data/ctv_v1 [--train 40] [--test 20]
Writes OUT/train.h5 (seeds 1000..) and OUT/test.h5 (seeds 5000..); the case folders are
deleted afterwards unless --keep-cases.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from AutoCTVLib.dataset import build_dataset
from AutoCTVLib.phantom import PhantomConfig, generate_phantom, write_phantom

TRAIN_SEED_START = 1000
TEST_SEED_START = 5000


def make_split(out: Path, name: str, seeds: range, style: str, keep_cases: bool) -> Path:
    cases = out / f"{name}_cases"
    cases.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for seed in seeds:
        case_dir = cases / f"phantom_{seed:05d}"
        if (case_dir / "ctv.nii.gz").exists():
            continue
        case_dir.mkdir(exist_ok=True)
        phantom = generate_phantom(PhantomConfig(seed=seed, vary_grid=True, annotator_style=style))
        write_phantom(phantom, case_dir)
    print(f"{name}: {len(seeds)} phantoms in {time.perf_counter() - started:.0f} s", flush=True)
    dataset = out / f"{name}.h5"
    report = build_dataset(cases, dataset, roi_pattern="CTV", source="nifti", overwrite=True)
    print(f"{name}: {len(report.succeeded)} cases in {dataset}", flush=True)
    if not keep_cases:
        shutil.rmtree(cases)
    return dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train", type=int, default=40)
    parser.add_argument("--test", type=int, default=20)
    parser.add_argument("--style", default="standard", help="annotator style of the labels")
    parser.add_argument("--keep-cases", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    make_split(
        args.out,
        "train",
        range(TRAIN_SEED_START, TRAIN_SEED_START + args.train),
        args.style,
        args.keep_cases,
    )
    make_split(
        args.out,
        "test",
        range(TEST_SEED_START, TEST_SEED_START + args.test),
        "standard",
        args.keep_cases,
    )


if __name__ == "__main__":
    main()
