"""Phantom generation and writing time for clinical-size grids (median of several runs).

Run: .venv/bin/python benchmarks/phantom_speed.py [--runs 5]
Writes benchmarks/results/phantom_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import median, write_results

from AutoCTVLib.phantom import PhantomConfig, generate_phantom, write_phantom

CASES = {
    "512×512×100 at 0.98×0.98×3 mm": {
        "size_xyz": (512, 512, 100),
        "spacing_xyz_mm": (0.98, 0.98, 3.0),
    },
    "256×256×80 at 1.8×1.8×3.5 mm": {"size_xyz": (256, 256, 80), "spacing_xyz_mm": (1.8, 1.8, 3.5)},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results/phantom_speed")
    args = parser.parse_args()
    rows, raw = [], {}
    for label, grid in CASES.items():
        generate_s, nifti_s, dicom_s = [], [], []
        for run in range(args.runs):
            config = PhantomConfig(seed=100 + run, **grid)
            start = time.perf_counter()
            phantom = generate_phantom(config)
            generate_s.append(time.perf_counter() - start)
            with tempfile.TemporaryDirectory() as folder:
                start = time.perf_counter()
                write_phantom(phantom, folder)
                nifti_s.append(time.perf_counter() - start)
            with tempfile.TemporaryDirectory() as folder:
                start = time.perf_counter()
                write_phantom(phantom, folder, dicom=True)
                dicom_s.append(time.perf_counter() - start)
        tracemalloc.start()
        generate_phantom(PhantomConfig(seed=99, **grid))
        peak_mib = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        raw[label] = {
            "generate_s": generate_s,
            "write_nifti_s": nifti_s,
            "write_nifti_and_dicom_s": dicom_s,
            "peak_python_mib": peak_mib,
        }
        rows.append(
            [
                label,
                f"{median(generate_s):.2f}",
                f"{min(generate_s):.2f}–{max(generate_s):.2f}",
                f"{median(nifti_s):.2f}",
                f"{median(dicom_s):.2f}",
                f"{peak_mib:.0f}",
            ]
        )
    write_results(
        args.out,
        f"Phantom generation time (median of {args.runs} seeds)",
        [
            "grid",
            "generate (s)",
            "range (s)",
            "write NIfTI (s)",
            "write NIfTI + DICOM (s)",
            "peak traced numpy memory (MiB)",
        ],
        rows,
        {"runs": args.runs, "results": raw},
    )
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
