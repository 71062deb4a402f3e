"""``autoctv demo``: the main job end to end on a generated pelvic phantom.

1. generate a seeded phantom (512×512×100 voxels at 0.98×0.98×3 mm by default);
2. write it to ``OUT/phantom/`` as NIfTI and as a DICOM CT series with an RTSTRUCT;
3. contour the DICOM series with the bundled model (``--model`` picks another) and write every
   output format to ``OUT/prediction/`` (NIfTI, .seg.nrrd, RTSTRUCT and DICOM SEG referencing
   the phantom's series, report.json);
4. draw ``OUT/overview.png`` (CT, predicted and reference CTV, uncertainty on a few slices);
5. print Dice and HD95 against the phantom's reference CTV.

Without a bundled model (and no ``--model``) the demo still generates and writes the phantom,
then says that contouring needs the model and how to get one, and exits 0.
Synthetic data only; the bundled model is not for clinical use.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from AutoCTVLib.errors import InputError, ModelFileError, OutputError

if TYPE_CHECKING:
    import numpy as np

    from AutoCTVLib.phantom import Phantom
    from AutoCTVLib.predict.predictor import Prediction
    from AutoCTVLib.volume import Volume

ORDER = 0
OVERVIEW_NAME = "overview.png"
#: What the demo writes into its folder; an earlier demo's outputs are replaced without asking.
DEMO_ENTRIES = frozenset({"phantom", "prediction", OVERVIEW_NAME})


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="contour a generated pelvic phantom end to end (synthetic data)",
        description=(
            "Generate a seeded synthetic pelvic CT phantom (512×512×100 voxels at 0.98×0.98×3 mm "
            "by default), write it as NIfTI and DICOM, contour its CTV with the bundled model, "
            "write every output format plus an overview picture, and print Dice and HD95 "
            "against the phantom's reference. Synthetic data only."
        ),
    )
    parser.add_argument("-o", "--out", type=Path, default=Path("demo_out"), help="output folder")
    parser.add_argument("--seed", type=int, default=2026, help="phantom seed (default 2026)")
    parser.add_argument(
        "--uncertainty",
        type=int,
        default=20,
        metavar="N",
        help="Monte-Carlo dropout samples (default 20; 0 = off)",
    )
    parser.add_argument(
        "--size", metavar="X,Y,Z", help="phantom grid in voxels (default 512,512,100)"
    )
    parser.add_argument(
        "--spacing", metavar="X,Y,Z", help="phantom voxel spacing in mm (default 0.977,0.977,3)"
    )
    parser.add_argument("--model", type=Path, help="model .safetensors (default: the bundled one)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    parser.add_argument(
        "--progress", choices=("bar", "json", "none"), default="bar", help="progress display"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="write into OUT even if it holds other files (an earlier demo's are always replaced)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from AutoCTVLib.predict.speed import prepare_process_environment

    thp_status = prepare_process_environment()
    from AutoCTVLib.cli.phantom_cmd import parse_triple
    from AutoCTVLib.cli.predict_cmd import check_arguments, run_prediction_job
    from AutoCTVLib.models.bundled import resolve_model_path

    check_arguments(args.uncertainty, args.device, args.threads, 0)
    size = parse_triple(args.size, "size", int)
    spacing = parse_triple(args.spacing, "spacing", float)
    try:
        model_path: Path | None = resolve_model_path(args.model)
    except ModelFileError as missing:
        if args.model is not None:
            raise
        model_path, model_missing = None, str(missing)
    out_dir: Path = args.out
    foreign = sorted(
        entry.name
        for entry in (out_dir.iterdir() if out_dir.is_dir() else ())
        if entry.name not in DEMO_ENTRIES
    )
    if foreign and not args.overwrite:
        raise InputError(
            f"{out_dir} holds files the demo did not write ({', '.join(foreign[:3])}); choose "
            "another folder or add --overwrite"
        )
    if not out_dir.parent.is_dir():
        raise OutputError(
            f"cannot create {out_dir}: folder {out_dir.parent} does not exist; create it or "
            "choose another -o/--out"
        )
    from AutoCTVLib.predict.outputs import check_folder_writable

    check_folder_writable(out_dir if out_dir.is_dir() else out_dir.parent)
    out_dir.mkdir(exist_ok=True)

    phantom, generate_s = _generate(args, size, spacing)
    geometry = phantom.ct.geometry
    ctv_ml = float(phantom.ctv.array.sum()) * geometry.voxel_volume_ml
    print(
        f"phantom (seed {args.seed}): {geometry.describe()}, reference CTV {ctv_ml:.0f} mL, "
        f"generated in {generate_s:.1f} s"
    )
    from AutoCTVLib.phantom.write import write_phantom

    mark = time.perf_counter()
    written = write_phantom(phantom, out_dir / "phantom", dicom=True, overwrite=True)
    print(f"phantom written to {out_dir / 'phantom'} in {time.perf_counter() - mark:.1f} s")
    if model_path is None:
        # The phantom part of the demo is complete; contouring needs the bundled model.
        print(f"not contoured: {model_missing}")
        print("Synthetic phantom only; not patient data.")
        return 0

    result = run_prediction_job(
        input_path=written["dicom_ct"],
        out_dir=out_dir / "prediction",
        formats=("nifti", "seg.nrrd", "rtstruct", "dicom-seg"),
        uncertainty=args.uncertainty,
        device=args.device,
        model=model_path,
        progress_mode=args.progress,
        threads=args.threads,
        overwrite=True,
        thp_status=thp_status,
    )
    from AutoCTVLib.predict.outputs import remove_stale_outputs

    remove_stale_outputs(out_dir / "prediction", result.written.paths)  # the demo owns it
    prediction = result.prediction
    _print_scores(prediction, phantom)
    _write_overview(prediction, result.loaded.volume, phantom, out_dir / OVERVIEW_NAME)
    report = result.report
    timings = report["timings_s"]
    print(
        f"contoured in {timings.get('total', 0.0):.1f} s (network {timings.get('network', 0):.1f} s"
        + (f", uncertainty {timings['uncertainty']:.1f} s" if "uncertainty" in timings else "")
        + f") on {report['settings'].get('device')}"
    )
    names = ", ".join(path.name for path in result.written.paths.values())
    print(f"outputs in {out_dir / 'prediction'}: {names}; overview: {out_dir / OVERVIEW_NAME}")
    print("Synthetic phantom and a model trained on phantoms only; not for clinical use.")
    return 0


def _generate(
    args: argparse.Namespace, size: tuple | None, spacing: tuple | None
) -> tuple[Phantom, float]:
    from AutoCTVLib.phantom import PhantomConfig, generate_phantom

    config = PhantomConfig(seed=args.seed, size_xyz=size, spacing_xyz_mm=spacing)
    started = time.perf_counter()
    if args.progress == "bar":
        print("generating the phantom ...", flush=True)
    phantom = generate_phantom(config)
    return phantom, time.perf_counter() - started


def _reference_on(prediction: Prediction, phantom: Phantom) -> np.ndarray:
    """The phantom's CTV on the prediction's grid (the DICOM read-back keeps the grid)."""
    from AutoCTVLib.preprocess.resample import resample_to_geometry

    if phantom.ctv.geometry.is_close(prediction.label.geometry):
        return phantom.ctv.array
    return resample_to_geometry(phantom.ctv, prediction.label.geometry, "nearest").array


def _print_scores(prediction: Prediction, phantom: Phantom) -> None:
    from AutoCTVLib.metrics import dice, hd95

    reference = _reference_on(prediction, phantom)
    geometry = prediction.label.geometry
    dice_value = dice(prediction.label.array, reference)
    hd95_value = hd95(prediction.label.array, reference, geometry.spacing_xyz_mm)
    print(
        f"Dice {dice_value:.3f}, HD95 {hd95_value:.1f} mm against the phantom's reference CTV "
        f"(predicted {prediction.ctv_volume_ml:.0f} mL)"
    )
    if prediction.summary is not None:
        slices = ", ".join(str(k) for k in prediction.slices_to_review) or "none"
        print(
            f"uncertainty: case score {prediction.summary.case_score:.3f} bits; slices to "
            f"review (k): {slices}"
        )


def _write_overview(prediction: Prediction, ct: Volume, phantom: Phantom, path: Path) -> None:
    """The overview picture (see :mod:`AutoCTVLib.predict.overview`) with the phantom's
    reference CTV, Dice and volumes."""
    from AutoCTVLib.predict.overview import draw_overview

    uncertainty = prediction.uncertainty
    draw_overview(
        ct,
        prediction.label.array,
        path,
        reference=_reference_on(prediction, phantom),
        entropy=None if uncertainty is None else uncertainty.entropy,
        review_slices=prediction.slices_to_review,
        title="AutoCTV demo on a synthetic phantom (not for clinical use)",
    )
