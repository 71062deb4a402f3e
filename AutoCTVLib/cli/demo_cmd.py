"""``autoctv demo``: the main job on an embedded default (a generated pelvic phantom).

For now it generates a seeded phantom and writes it out (CT, CTV, structures, and with
``--dicom`` a DICOM CT series plus RTSTRUCT). Once the bundled model ships, the demo contours
the phantom with it and reports Dice against the phantom's reference.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ORDER = 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="generate a synthetic pelvic phantom and run AutoCTV on it",
        description=(
            "Generate a seeded synthetic pelvic CT phantom (512×512×100 voxels at "
            "0.98×0.98×3 mm by default) and write it to OUT_DIR. Synthetic data only."
        ),
    )
    parser.add_argument("-o", "--out", type=Path, default=Path("demo_out"), help="output folder")
    parser.add_argument("--seed", type=int, default=2026, help="phantom seed (default 2026)")
    parser.add_argument(
        "--no-dicom", action="store_true", help="skip writing the DICOM CT series and RTSTRUCT"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from AutoCTVLib.phantom import PhantomConfig, generate_phantom, write_phantom

    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    phantom = generate_phantom(PhantomConfig(seed=args.seed))
    generated = time.perf_counter()
    written = write_phantom(phantom, args.out, dicom=not args.no_dicom)
    finished = time.perf_counter()
    geometry = phantom.ct.geometry
    ctv_ml = float(phantom.ctv.array.sum()) * geometry.voxel_volume_ml
    print(f"phantom (seed {args.seed}): {geometry.describe()}, CTV {ctv_ml:.0f} mL")
    print(f"generated in {generated - started:.1f} s, written in {finished - generated:.1f} s")
    for name, path in sorted(written.items()):
        print(f"  {name:<18} {path}")
    print("Synthetic phantom only; not patient data.")
    return 0
