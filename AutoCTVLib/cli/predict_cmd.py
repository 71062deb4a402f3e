"""``autoctv predict``: contour the CTV on a CT and write every requested output.

::

    autoctv predict INPUT -o OUT_DIR [--format seg.nrrd,nifti,rtstruct,dicom-seg]
                    [--uncertainty N] [--device auto|cpu|cuda|mps] [--model FILE]
                    [--progress bar|json|none] [--threads N] [--series-uid UID]
                    [--overwrite] [--create-dicom-ct]

INPUT is a DICOM CT folder or a NIfTI/NRRD/MHA file. Outputs (names are stable, see
:mod:`AutoCTVLib.predict.outputs`) are published together at the end; Ctrl-C or SIGTERM leaves
none behind. Before torch is imported the command sets ``THP_MEM_ALLOC_ENABLE=1`` (faster CPU
convolutions; see :mod:`AutoCTVLib.predict.speed`) unless the variable is already set.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from AutoCTVLib.errors import InputError

if TYPE_CHECKING:
    from AutoCTVLib.io.ct_reader import LoadedCT
    from AutoCTVLib.predict.outputs import WrittenOutputs
    from AutoCTVLib.predict.predictor import Prediction

ORDER = 10
_DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|mps|cuda:\d+)$")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="contour the CTV on a CT (DICOM folder, NIfTI, NRRD)",
        description=(
            "Contour the clinical target volume on a planning CT with the bundled (or a given) "
            "model and write the result on the CT's exact grid: OUT_DIR/ctv.nii.gz, "
            "ctv_probability.nii.gz, report.json, and per format ctv.seg.nrrd, rtstruct.dcm, "
            "seg.dcm; with --uncertainty N also uncertainty_entropy.nii.gz and "
            "uncertainty_mutual_information.nii.gz. The bundled model was trained on synthetic "
            "phantoms only and is not for clinical use."
        ),
    )
    parser.add_argument("input", type=Path, help="DICOM CT folder, or a .nii/.nii.gz/.nrrd/.mha")
    parser.add_argument("-o", "--out", dest="out_dir", type=Path, required=True, help="OUT_DIR")
    parser.add_argument(
        "--format",
        default="nifti,seg.nrrd",
        help="comma-separated: nifti, seg.nrrd, rtstruct, dicom-seg (default nifti,seg.nrrd; the "
        "NIfTI files are always written)",
    )
    parser.add_argument(
        "--uncertainty",
        type=int,
        default=0,
        metavar="N",
        help="Monte-Carlo dropout samples for uncertainty maps (0 = off; 20 is usual)",
    )
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps"
    )
    parser.add_argument("--model", type=Path, help="model .safetensors (default: the bundled one)")
    parser.add_argument(
        "--progress",
        choices=("bar", "json", "none"),
        default="bar",
        help="a bar on stderr, JSON lines on stdout, or nothing (default bar)",
    )
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's)")
    parser.add_argument("--series-uid", help="SeriesInstanceUID when the folder holds several CTs")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument(
        "--create-dicom-ct",
        action="store_true",
        help="for a NIfTI/NRRD input, write the CT as a new DICOM series (OUT_DIR/ct_dicom) so "
        "RTSTRUCT and DICOM SEG can reference it",
    )
    parser.add_argument(
        "--mc-method",
        choices=("cheap", "naive"),
        default="cheap",
        help="MC sampling: cheap (last step, boundary box; default) or naive (every step)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the MC dropout masks")
    parser.add_argument(
        "--min-component-ml",
        type=float,
        default=0.0,
        help="also remove CTV parts smaller than this (mL; default 0). Islands farther than "
        "15 mm from the largest part are always removed",
    )
    parser.add_argument(
        "--no-postprocess", action="store_true", help="keep the thresholded mask as it is"
    )
    parser.set_defaults(handler=run)


@dataclass(frozen=True)
class JobResult:
    """What :func:`run_prediction_job` did."""

    loaded: LoadedCT
    prediction: Prediction
    written: WrittenOutputs
    report: dict[str, Any]


def run(args: argparse.Namespace) -> int:
    from AutoCTVLib.predict.speed import prepare_process_environment

    thp_status = prepare_process_environment()
    result = run_prediction_job(
        input_path=args.input,
        out_dir=args.out_dir,
        formats=args.format,
        uncertainty=args.uncertainty,
        device=args.device,
        model=args.model,
        progress_mode=args.progress,
        threads=args.threads,
        series_uid=args.series_uid,
        overwrite=args.overwrite,
        create_dicom_ct=args.create_dicom_ct,
        mc_method=args.mc_method,
        seed=args.seed,
        min_component_ml=None if args.no_postprocess else args.min_component_ml,
        thp_status=thp_status,
    )
    if args.progress != "json":
        print_summary(result, args.out_dir)
    return 0


def check_arguments(uncertainty: int, device: str, threads: int | None, seed: int) -> None:
    """One-line errors for bad option values (before anything heavy happens)."""
    if uncertainty < 0:
        raise InputError(
            f"--uncertainty must be 0 or a positive number of samples, not {uncertainty}"
        )
    if uncertainty > 1000:
        raise InputError(f"--uncertainty {uncertainty} is too many samples (at most 1000)")
    if not _DEVICE_PATTERN.match(str(device).strip().lower()):
        raise InputError(f"--device must be auto, cpu, cuda, cuda:N or mps, not {device!r}")
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be at least 1, not {threads}")
    if seed < 0:
        raise InputError(f"--seed must not be negative, not {seed}")


def run_prediction_job(
    *,
    input_path: Path,
    out_dir: Path,
    formats: str | tuple[str, ...],
    uncertainty: int = 0,
    device: str = "auto",
    model: Path | None = None,
    progress_mode: str = "bar",
    threads: int | None = None,
    series_uid: str | None = None,
    overwrite: bool = False,
    create_dicom_ct: bool = False,
    mc_method: str = "cheap",
    seed: int = 0,
    min_component_ml: float | None = 0.0,
    thp_status: str = "",
) -> JobResult:
    """Read, predict and write: the work of ``autoctv predict`` (also used by the demo)."""
    started = time.perf_counter()
    check_arguments(uncertainty, device, threads, seed)
    from AutoCTVLib.cli.progress import StagedProgress, predict_stage_weights
    from AutoCTVLib.io.ct_reader import read_ct
    from AutoCTVLib.models.bundled import resolve_model_path
    from AutoCTVLib.models.model_file import check_model_file
    from AutoCTVLib.predict.outputs import OutputRequest, check_request, parse_formats

    format_names = parse_formats(formats if isinstance(formats, str) else ",".join(formats))
    if min_component_ml is not None and not min_component_ml >= 0:
        raise InputError(f"--min-component-ml must not be negative, not {min_component_ml}")
    model_path = resolve_model_path(model)
    check_model_file(model_path)  # a bad model file set is refused before the CT is read
    request = OutputRequest(
        out_dir=Path(out_dir),
        formats=format_names,
        overwrite=overwrite,
        create_dicom_ct=create_dicom_ct,
    )
    progress = StagedProgress(progress_mode, predict_stage_weights(uncertainty > 0))
    created_out_dir = not Path(out_dir).exists()
    try:
        progress("read", 0.0, f"reading {input_path}")
        mark = time.perf_counter()
        loaded = read_ct(input_path, series_uid=series_uid)
        read_s = time.perf_counter() - mark
        progress("read", 1.0, loaded.volume.geometry.describe())
        check_request(request, loaded.identity, uncertainty > 0)
        result = _predict_and_write(
            loaded,
            request,
            model_path=model_path,
            uncertainty=uncertainty,
            device=device,
            threads=threads,
            mc_method=mc_method,
            seed=seed,
            min_component_ml=min_component_ml,
            progress=progress,
            read_s=read_s,
            started=started,
            thp_status=thp_status,
        )
        progress.done(f"wrote {len(result.written.paths)} outputs to {out_dir}")
        return result
    except BaseException:
        progress.close()
        if created_out_dir:
            _remove_if_empty(Path(out_dir))
        raise


def _predict_and_write(
    loaded: LoadedCT,
    request: Any,
    *,
    model_path: Path,
    uncertainty: int,
    device: str,
    threads: int | None,
    mc_method: str,
    seed: int,
    min_component_ml: float | None,
    progress: Any,
    read_s: float,
    started: float,
    thp_status: str,
) -> JobResult:
    from AutoCTVLib.models.model_file import load_model
    from AutoCTVLib.predict.mc import MCSettings
    from AutoCTVLib.predict.outputs import write_outputs
    from AutoCTVLib.predict.predictor import DEFAULT_POSTPROCESS, Predictor
    from AutoCTVLib.predict.report import build_report

    mark = time.perf_counter()
    model, card = load_model(model_path)
    predictor = Predictor(model, card, device=device, threads=threads)
    load_s = time.perf_counter() - mark
    mc = MCSettings(samples=uncertainty, method=mc_method, seed=seed) if uncertainty else None
    postprocess = (
        None
        if min_component_ml is None
        else dataclasses.replace(DEFAULT_POSTPROCESS, min_component_ml=float(min_component_ml))
    )
    prediction = predictor.predict(
        loaded.volume,
        mc=mc,
        postprocess=postprocess,
        input_identity=loaded.identity.summary(),
        progress=progress,
    )
    report = build_report(
        prediction,
        model_file=str(model_path),
        disclaimer=card.disclaimer,
        timings_s={
            "read": read_s,
            "load_model": load_s,
            "predict_total": prediction.timings_s.get("total", 0.0),
            "total": time.perf_counter() - started,
        },
        warnings=list(loaded.warnings),
    )
    report["settings"]["process"] = {"THP_MEM_ALLOC_ENABLE": thp_status}
    written = write_outputs(
        prediction,
        request,
        card=card,
        identity=loaded.identity,
        ct=loaded.volume,
        report=report,
        progress=lambda fraction, message: progress("write", fraction, message),
    )
    return JobResult(loaded, prediction, written, report)


def print_summary(result: JobResult, out_dir: Path) -> None:
    """A few lines for people: volume, uncertainty, outputs, timings, disclaimer."""
    prediction, report = result.prediction, result.report
    model = report["model"]
    settings = report["settings"]
    print(
        f"CTV {prediction.ctv_volume_ml:.1f} mL on {prediction.label.geometry.describe()}; "
        f"model {model['name']} {model['version']} on {settings.get('device')}"
    )
    uncertainty = report.get("uncertainty")
    if uncertainty:
        slices = ", ".join(str(k) for k in uncertainty["slices_to_review"]) or "none"
        print(
            f"uncertainty ({uncertainty['n_samples']} MC samples): case score "
            f"{uncertainty['case_score']:.3f} bits; slices to review (k): {slices}"
        )
    names = ", ".join(path.name for path in result.written.paths.values())
    print(f"outputs in {out_dir}: {names}")
    timings = report["timings_s"]
    shown = [
        f"{stage} {timings[stage]:.1f} s"
        for stage in ("read", "preprocess", "network", "uncertainty", "resample", "write", "total")
        if stage in timings
    ]
    print("timings: " + ", ".join(shown))
    for warning in report.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    if model.get("disclaimer"):
        print(f"model note: {model['disclaimer']}")


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass
