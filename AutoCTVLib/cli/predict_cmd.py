"""``autoctv predict``: contour the CTV on a CT and write every requested output.

::

    autoctv predict INPUT [INPUT ...] -o OUT_DIR [--batch]
                    [--format seg.nrrd,nifti,rtstruct,dicom-seg]
                    [--uncertainty N] [--device auto|cpu|cuda|mps] [--model FILE]
                    [--progress bar|json|none] [--threads N] [--series-uid UID]
                    [--overwrite] [--create-dicom-ct]

INPUT is a DICOM CT folder or a NIfTI/NRRD/MHA file. Outputs (names are stable, see
:mod:`AutoCTVLib.predict.outputs`) are published together at the end; Ctrl-C or SIGTERM leaves
none behind. Several INPUTs, or ``--batch`` with folders of cases, contour each case into its
own sub-folder of OUT_DIR (see :mod:`AutoCTVLib.cli.predict_batch`).

Before torch is imported the command sets ``THP_MEM_ALLOC_ENABLE=1`` (faster CPU
convolutions; see :mod:`AutoCTVLib.predict.speed`) unless the variable is already set.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from collections.abc import Sequence
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
    parser.add_argument(
        "inputs",
        type=Path,
        nargs="+",
        metavar="INPUT",
        help="DICOM CT folder, or a .nii/.nii.gz/.nrrd/.mha; several make a batch (one "
        "sub-folder of OUT_DIR per case)",
    )
    parser.add_argument("-o", "--out", dest="out_dir", type=Path, required=True, help="OUT_DIR")
    parser.add_argument(
        "--batch",
        action="store_true",
        help="every INPUT is a folder of cases (each sub-folder and each image file in it is one "
        "case); outputs go to OUT_DIR/<case>/, a summary table to OUT_DIR/batch_summary.csv; "
        "cases done earlier are skipped unless --overwrite",
    )
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
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the outputs this run writes (other files stay); in a batch, also contour "
        "cases done earlier again",
    )
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
    if args.batch or len(args.inputs) > 1:
        return run_batch_command(args, thp_status)
    result = run_prediction_job(
        input_path=args.inputs[0],
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


def _job_options(args: argparse.Namespace, thp_status: str) -> dict[str, Any]:
    return {
        "formats": args.format,
        "uncertainty": args.uncertainty,
        "device": args.device,
        "model": args.model,
        "progress_mode": args.progress,
        "threads": args.threads,
        "overwrite": args.overwrite,
        "create_dicom_ct": args.create_dicom_ct,
        "mc_method": args.mc_method,
        "seed": args.seed,
        "min_component_ml": None if args.no_postprocess else args.min_component_ml,
        "thp_status": thp_status,
    }


def run_batch_command(args: argparse.Namespace, thp_status: str) -> int:
    """Several cases: check everything that does not depend on a case first, then contour each
    case into its own sub-folder, print the table and exit 2 when any case failed."""
    from AutoCTVLib.cli.predict_batch import (
        SUMMARY_NAME,
        collect_cases,
        run_batch,
        summary_table,
        write_summary,
    )
    from AutoCTVLib.models.bundled import resolve_model_path
    from AutoCTVLib.predict.outputs import check_output_folder, parse_formats

    if args.series_uid is not None:
        raise InputError(
            "--series-uid picks a series in one DICOM folder; it cannot be used in a batch"
        )
    check_arguments(args.uncertainty, args.device, args.threads, args.seed)
    parse_formats(args.format)
    resolve_model_path(args.model)
    out_dir = Path(args.out_dir)
    check_output_folder(out_dir)
    cases = collect_cases(args.inputs, args.batch)
    rows = run_batch(cases, out_dir, _job_options(args, thp_status))
    summary_path = write_summary(rows, out_dir / SUMMARY_NAME)
    failed = [row.case for row in rows if row.status == "failed"]
    if args.progress == "json":
        event = {
            "event": "batch",
            "summary": str(summary_path),
            "cases": [r.as_dict() for r in rows],
        }
        print(json.dumps(event), flush=True)
    else:
        print(summary_table(rows))
        done = sum(row.status == "done" for row in rows)
        skipped = sum(row.status == "skipped" for row in rows)
        print(
            f"{len(rows)} case(s): {done} contoured, {skipped} skipped (done earlier), "
            f"{len(failed)} failed; table in {summary_path}"
        )
    if failed:
        raise InputError(batch_failure_message(rows, failed, summary_path))
    return 0


def batch_failure_message(rows: Sequence[object], failed: Sequence[str], summary: Path) -> str:
    """The one-line error of a batch in which ``failed`` (case names) of ``rows`` failed: what
    became of the other cases, or that every case failed."""
    shown = ", ".join(failed[:5]) + (" ..." if len(failed) > 5 else "")
    done = sum(getattr(row, "status", "") == "done" for row in rows)
    skipped = sum(getattr(row, "status", "") == "skipped" for row in rows)
    if len(failed) == len(rows):
        return f"all {len(rows)} case(s) failed ({shown}); nothing was contoured; see {summary}"
    others = f"{done} contoured" + (f", {skipped} skipped (done earlier)" if skipped else "")
    return f"{len(failed)} of {len(rows)} case(s) failed ({shown}); {others}; see {summary}"


def check_arguments(uncertainty: int, device: str, threads: int | None, seed: int) -> None:
    """One-line errors for bad option values (before anything heavy happens)."""
    if uncertainty < 0:
        raise InputError(
            f"--uncertainty must be 0 or a positive number of samples, not {uncertainty}"
        )
    if uncertainty == 1:
        raise InputError(
            "--uncertainty 1 gives no spread to measure: Monte-Carlo dropout needs at least 2 "
            "samples (20 is usual), or 0 for none"
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
    progress_label: str = "",
    predictor_cache: dict[Any, Any] | None = None,
) -> JobResult:
    """Read, predict and write: the work of ``autoctv predict`` (also used by the demo and for
    each case of a batch).

    ``progress_label`` names the case in the progress display; ``predictor_cache`` (a dict the
    caller keeps) lets a batch load the model once.
    """
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
    check_before_reading(request, Path(input_path), uncertainty > 0)
    progress = StagedProgress(
        progress_mode, predict_stage_weights(uncertainty > 0), label=progress_label
    )
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
            predictor_cache=predictor_cache,
        )
        progress.done(f"wrote {len(result.written.paths)} outputs to {out_dir}")
        return result
    except BaseException:
        progress.close()
        if created_out_dir:
            _remove_if_empty(Path(out_dir))
        raise


def check_before_reading(request: Any, input_path: Path, with_uncertainty: bool) -> None:
    """Every output problem that can be known from the input's name alone, before the CT is
    read: the folder (missing parent, not writable, outputs that exist) and a DICOM export from
    an image file.

    Raises:
        InputError, OutputError: one-line messages naming the option that fixes them.
    """
    from AutoCTVLib.io.ct_reader import image_file_format
    from AutoCTVLib.io.identity import FileIdentity
    from AutoCTVLib.predict.outputs import check_destination, check_reference

    is_image_file = image_file_format(input_path) is not None
    if is_image_file:
        check_reference(request, FileIdentity(path=str(input_path), sha256="", format="file"))
    check_destination(request, with_uncertainty, input_is_dicom=False if is_image_file else None)


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
    predictor_cache: dict[Any, Any] | None = None,
) -> JobResult:
    from AutoCTVLib.models.model_file import load_model
    from AutoCTVLib.predict.mc import MCSettings
    from AutoCTVLib.predict.outputs import write_outputs
    from AutoCTVLib.predict.predictor import DEFAULT_POSTPROCESS, Predictor
    from AutoCTVLib.predict.report import build_report

    mark = time.perf_counter()
    key = (str(model_path), device, threads)
    if predictor_cache is not None and key in predictor_cache:
        card, predictor = predictor_cache[key]
    else:
        model, card = load_model(model_path)
        predictor = Predictor(model, card, device=device, threads=threads)
        if predictor_cache is not None:
            predictor_cache[key] = (card, predictor)
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
