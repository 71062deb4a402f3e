"""``autoctv phantom``: write seeded synthetic female pelvic CT phantoms with labels and a CTV.

Example::

    autoctv phantom -o case1 --seed 7 --dicom
    autoctv phantom -o train --cases 20 --size 256,256,64 --spacing 1.6,1.6,4 --vary-grid
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ORDER = 80

_DESCRIPTION = """\
Generate seeded synthetic female pelvic CT phantoms and write, per case, DIR/ct.nii.gz (HU),
DIR/ctv.nii.gz (0/1), DIR/structures.nii.gz (one label per structure), DIR/structures.json
(label -> name) and DIR/phantom.json (parameters); with --dicom also DIR/dicom/ct/ (DICOM CT
series) and DIR/dicom/rtstruct.dcm (ROI "CTV" plus the structures). The same seed always gives
the same phantom; the anatomy does not change with the grid. Synthetic data only.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "phantom",
        help="write synthetic pelvic CT phantoms (CT, CTV, structures, optional DICOM)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-o", "--out", required=True, type=Path, metavar="DIR", help="output folder"
    )
    parser.add_argument("--seed", type=int, default=0, help="phantom seed (default 0)")
    parser.add_argument(
        "--cases",
        type=int,
        default=1,
        metavar="N",
        help="write N cases with seeds SEED, SEED+1, ... into DIR/case_NNNN (NNNN = the "
        "case's seed; default 1: write straight into DIR)",
    )
    grid = parser.add_argument_group("grid")
    grid.add_argument("--size", metavar="X,Y,Z", help="voxels along x, y, z (default 512,512,100)")
    grid.add_argument(
        "--spacing", metavar="X,Y,Z", help="voxel spacing in mm (default 0.977,0.977,3)"
    )
    grid.add_argument(
        "--slice-thickness", type=float, metavar="MM", help="slice spacing in mm (overrides Z)"
    )
    grid.add_argument(
        "--vary-grid",
        action="store_true",
        help="draw pixel spacing 0.7-1.2 mm, slice thickness 1.25-5 mm and coverage from the seed",
    )
    grid.add_argument("--flip", action="store_true", help="feet-first grid (x and z axes reversed)")
    grid.add_argument(
        "--oblique", type=float, default=0.0, metavar="DEG", help="tilt the grid by DEG degrees"
    )
    image = parser.add_argument_group("image")
    image.add_argument(
        "--noise-hu", type=float, metavar="HU", help="image noise SD in HU (default: 10-25 by seed)"
    )
    image.add_argument(
        "--contrast", action="store_true", help="intravenous contrast in arteries and veins"
    )
    parser.add_argument(
        "--annotator-style",
        choices=("standard", "wide", "tight", "random"),
        default="standard",
        help="how ctv.nii.gz is drawn (default standard = guideline); other styles also write "
        "ctv_reference.nii.gz",
    )
    parser.add_argument(
        "--format", choices=("nii.gz", "nrrd"), default="nii.gz", help="image file format"
    )
    parser.add_argument(
        "--dicom", action="store_true", help="also write a DICOM CT series and an RTSTRUCT"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per case instead of text"
    )
    parser.set_defaults(handler=run)


def parse_triple(text: str | None, what: str, kind: type) -> tuple | None:
    """'X,Y,Z' → a tuple of three numbers; PhantomConfigError with a one-line message."""
    from AutoCTVLib.phantom import PhantomConfigError

    if text is None:
        return None
    parts = [p.strip() for p in text.replace("x", ",").replace("×", ",").split(",")]
    try:
        values = tuple(kind(p) for p in parts)
    except ValueError:
        raise PhantomConfigError(
            f"--{what} must be three {'whole numbers' if kind is int else 'numbers'} "
            f"like X,Y,Z, got {text!r}"
        ) from None
    if len(values) != 3:
        raise PhantomConfigError(f"--{what} must have three values X,Y,Z, got {text!r}")
    return values


def run(args: argparse.Namespace) -> int:
    from AutoCTVLib.phantom import PhantomConfig, PhantomConfigError, generate_phantom
    from AutoCTVLib.phantom.write import output_names, write_phantom

    if args.cases < 1:
        raise PhantomConfigError(f"--cases must be at least 1, got {args.cases}")
    size = parse_triple(args.size, "size", int)
    spacing = parse_triple(args.spacing, "spacing", float)
    configs = [
        PhantomConfig(
            seed=args.seed + index,
            size_xyz=size,
            spacing_xyz_mm=spacing,
            slice_thickness_mm=args.slice_thickness,
            vary_grid=args.vary_grid,
            flip=args.flip,
            oblique_deg=args.oblique,
            noise_hu=args.noise_hu,
            contrast=args.contrast,
            annotator_style=args.annotator_style,
        )
        for index in range(args.cases)
    ]
    for config in configs:
        folder = args.out if args.cases == 1 else args.out / f"case_{config.seed:04d}"
        started = time.perf_counter()
        phantom = generate_phantom(config)
        generated = time.perf_counter()
        if not args.overwrite:
            _refuse_existing(folder, output_names(phantom, args.format), args.dicom)
        written = write_phantom(
            phantom, folder, dicom=args.dicom, image_format=args.format, overwrite=args.overwrite
        )
        finished = time.perf_counter()
        geometry = phantom.ct.geometry
        voxel_ml = geometry.voxel_volume_ml
        summary = {
            "seed": config.seed,
            "folder": str(folder),
            "grid": geometry.describe(),
            "ctv_ml": round(float(phantom.ctv.array.sum()) * voxel_ml, 1),
            "ctv_reference_ml": round(float(phantom.ctv_reference.array.sum()) * voxel_ml, 1),
            "generate_s": round(generated - started, 2),
            "write_s": round(finished - generated, 2),
            "files": {key: str(path) for key, path in written.items()},
        }
        if args.json:
            print(json.dumps(summary), flush=True)
        else:
            print(
                f"phantom seed {config.seed}: {summary['grid']}, CTV {summary['ctv_ml']} mL "
                f"({args.annotator_style}); generated in {summary['generate_s']} s, "
                f"written in {summary['write_s']} s to {folder}",
                flush=True,
            )
    if not args.json:
        print("Synthetic phantoms only; not patient data.")
    return 0


def _refuse_existing(folder: Path, names: dict[str, str], dicom: bool) -> None:
    from AutoCTVLib.errors import OutputError

    candidates = [folder / name for name in names.values()]
    if dicom:
        candidates.append(folder / "dicom")
    for path in candidates:
        if path.exists():
            raise OutputError(f"{path} already exists; use --overwrite to replace it")
