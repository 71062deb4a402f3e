"""``autoctv complete``: a full 3D contour from a structure drawn on a few slices.

::

    autoctv complete CT SPARSE_LABEL -o OUT_LABEL [--method learned|finetune|interpolate]
                     [--axes auto|z|y|x] [--extent auto|drawn|free] [--model FILE]
                     [--label VALUE] [--time-budget S] [--overwrite]

The sparse label must lie on the CT's grid. OUT_LABEL is a labelmap on the CT's exact grid
holding the completed structure with the sparse label's value; every annotated slice is exactly
as drawn.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ORDER = 40


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "complete",
        help="complete a structure drawn on a few slices into a 3D contour",
        description=(
            "Complete a structure drawn on a few slices (axial, coronal or sagittal, in any mix) "
            "into a full 3D labelmap on the CT's grid. Methods: 'learned' (the completion "
            "network, one pass), 'finetune' (the network fine-tuned on this scan's drawn slices "
            "for --time-budget seconds first) and 'interpolate' (morphological contour "
            "interpolation, as 3D Slicer's 'Fill between slices'). Drawn slices are kept exactly."
        ),
    )
    parser.add_argument("ct", type=Path, help="the CT: DICOM folder, NIfTI, NRRD or MHA file")
    parser.add_argument(
        "sparse_label", type=Path, help="labelmap on the CT's grid with the drawn slices"
    )
    parser.add_argument(
        "-o", "--out", type=Path, required=True, help="output labelmap (.nii.gz, .nii or .nrrd)"
    )
    parser.add_argument(
        "--method",
        choices=("learned", "finetune", "interpolate"),
        default="learned",
        help="completion method (default learned)",
    )
    parser.add_argument(
        "--axes",
        choices=("auto", "z", "y", "x"),
        default="auto",
        help=(
            "which slices were drawn: z = axial (k), y = coronal (j), x = sagittal (i) index "
            "axis; auto finds them from the drawing (default)"
        ),
    )
    parser.add_argument(
        "--extent",
        choices=("auto", "drawn", "free"),
        default="auto",
        help=(
            "drawn: nothing beyond the first and last drawn slice (Slicer's 'Fill between "
            "slices' convention); free: the network may extend the structure past them; auto "
            "(default): drawn for slices along one axis, free for several axes"
        ),
    )
    parser.add_argument("--model", type=Path, help="completion model file (default: bundled)")
    parser.add_argument(
        "--label", type=int, help="label value to complete (default: the only one present)"
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=40.0,
        metavar="S",
        help="seconds of fine-tuning for --method finetune (default 40)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--progress",
        choices=("bar", "json", "none"),
        default="bar",
        help="progress display: a bar on stderr, JSON lines on stdout, or none (default bar)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUT_LABEL if it exists")
    parser.set_defaults(handler=run)


def check_output_file(path: Path, overwrite: bool) -> None:
    """Every problem of OUT_LABEL, found before the CT is read (one-line OutputError)."""
    from AutoCTVLib.errors import OutputError
    from AutoCTVLib.io.image_files import image_format_for
    from AutoCTVLib.predict.outputs import check_folder_writable

    image_format_for(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; -o/--out takes a file name such as ctv.nii.gz")
    if not path.parent.is_dir():
        raise OutputError(
            f"cannot write {path.name}: folder {path.parent} does not exist; create it first"
        )
    if path.exists() and not overwrite:
        raise OutputError(f"{path} already exists; choose another name or add --overwrite")
    check_folder_writable(path.parent)


def run(args: argparse.Namespace) -> int:
    from AutoCTVLib.cli.progress import StagedProgress
    from AutoCTVLib.completion import FinetuneConfig, complete
    from AutoCTVLib.device import select_device
    from AutoCTVLib.errors import InputError
    from AutoCTVLib.io.ct_reader import read_ct
    from AutoCTVLib.io.image_files import read_labelmap, write_labelmap

    check_output_file(args.out, args.overwrite)
    if not args.time_budget >= 0:
        raise InputError(f"--time-budget must be zero or more seconds, got {args.time_budget}")
    try:
        device = select_device(args.device)
    except ValueError as error:
        raise InputError(str(error)) from error
    loaded = read_ct(args.ct)
    sparse = read_labelmap(args.sparse_label, reference=loaded.volume.geometry)
    staged = StagedProgress(args.progress, {"complete": 1.0})

    def progress(fraction: float, message: str) -> None:
        staged("complete", fraction, message)

    try:
        result = complete(
            loaded.volume,
            sparse,
            method=args.method,
            axes=args.axes,
            extent=args.extent,
            model=args.model,
            label=args.label,
            finetune=FinetuneConfig(time_budget_s=args.time_budget),
            device=device,
            progress=progress if args.progress != "none" else None,
        )
    finally:
        staged.close()
    metadata = {
        **result.mask.metadata,
        "completion_label": str(result.label),
        "completion_seconds": f"{result.seconds:.2f}",
        "ct_identity": json.dumps(loaded.identity.summary(), default=str)[:2000],
    }
    labels = result.mask.array * result.label
    write_labelmap(
        labels, loaded.volume.geometry, args.out, metadata=metadata, overwrite=args.overwrite
    )
    summary = {
        "event": "done",
        "output": str(args.out),
        "method": result.method,
        "annotation": result.annotation.to_dict(),
        "voxels": int(result.mask.array.sum()),
        "volume_ml": float(result.mask.array.sum()) * loaded.volume.geometry.voxel_volume_ml,
        "seconds": round(result.seconds, 2),
        **{k: v for k, v in result.details.items() if k.startswith(("model_name", "finetune_"))},
    }
    if args.progress == "json":
        print(json.dumps(summary), flush=True)
    else:
        print(
            f"completed label {result.label} by {result.method} from "
            f"{result.annotation.describe()}: {summary['volume_ml']:.1f} mL in "
            f"{result.seconds:.1f} s"
        )
        print(f"output: {args.out}")
    return 0
