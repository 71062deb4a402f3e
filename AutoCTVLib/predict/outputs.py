"""Write every output of a prediction into one folder, all together or none at all.

File names inside ``OUT_DIR`` (stable: the Slicer module and scripts rely on them):

=================================  ===========================================================
``ctv.nii.gz``                     uint8 CTV labelmap on the input grid (always)
``ctv_probability.nii.gz``         float32 CTV probability on the input grid (always)
``uncertainty_entropy.nii.gz``     predictive entropy, bits (with MC uncertainty)
``uncertainty_mutual_information.nii.gz``  mutual information, bits (with MC uncertainty)
``ctv.seg.nrrd``                   Slicer segmentation, segment "CTV" (format ``seg.nrrd``)
``rtstruct.dcm``                   DICOM RT Structure Set (format ``rtstruct``)
``seg.dcm``                        DICOM Segmentation (format ``dicom-seg``)
``ct_dicom/``                      the CT as a new DICOM series (``create_dicom_ct``, non-DICOM
                                   input with a DICOM format only)
``report.json``                    :mod:`AutoCTVLib.predict.report` (always, written last)
=================================  ===========================================================

The NIfTI files are always written because they carry the probability and uncertainty maps,
which no other format holds (the Slicer module loads them as heat maps); ``nifti`` may still be
listed among the formats. RTSTRUCT and DICOM SEG must reference a DICOM CT series: the input's
own, or with ``create_dicom_ct`` a new series written from the input volume. Every DICOM object
names the model and its version in SeriesDescription (and DICOM SEG in ContentLabel).

All files go through one :class:`~AutoCTVLib.io.atomic.OutputTransaction`: an error, Ctrl-C or
SIGTERM anywhere leaves none of them behind. With ``overwrite``, the files this run writes
replace those of the same names and every other file in the folder is left as it was (an
earlier run's uncertainty maps stay when this run computes none; ``report.json`` lists what
this run wrote). :func:`remove_stale_outputs` clears them for a caller that owns the folder
(the demo).

:func:`check_destination` finds every problem of the output folder (missing parent, not a
folder, not writable, outputs that exist) before any work is done; :func:`check_request` adds
the check that needs the input's identity (a DICOM export needs a DICOM series to reference).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from AutoCTVLib import terminology
from AutoCTVLib.errors import InputError, OutputError
from AutoCTVLib.io.atomic import OutputTransaction
from AutoCTVLib.io.identity import FileIdentity, SeriesIdentity
from AutoCTVLib.models.card import ModelCard
from AutoCTVLib.predict.predictor import Prediction
from AutoCTVLib.predict.report import write_report
from AutoCTVLib.volume import Volume

logger = logging.getLogger(__name__)

FORMATS = ("nifti", "seg.nrrd", "rtstruct", "dicom-seg")
DEFAULT_FORMATS = ("nifti", "seg.nrrd")
DICOM_FORMATS = ("rtstruct", "dicom-seg")
OUTPUT_NAMES: dict[str, str] = {
    "labelmap": "ctv.nii.gz",
    "probability": "ctv_probability.nii.gz",
    "entropy": "uncertainty_entropy.nii.gz",
    "mutual_information": "uncertainty_mutual_information.nii.gz",
    "seg.nrrd": "ctv.seg.nrrd",
    "rtstruct": "rtstruct.dcm",
    "dicom-seg": "seg.dcm",
    "dicom_ct": "ct_dicom",
    "report": "report.json",
}
_LO = 64  # DICOM LO length

WriteProgress = Callable[[float, str], None]


def parse_formats(text: str) -> tuple[str, ...]:
    """``"seg.nrrd,nifti,rtstruct"`` → the listed formats in :data:`FORMATS` order.

    Raises:
        InputError: an unknown or empty format name.
    """
    names = [part.strip().lower() for part in str(text).split(",") if part.strip()]
    if not names:
        raise InputError(f"no output format given; choose from {', '.join(FORMATS)}")
    unknown = [name for name in names if name not in FORMATS]
    if unknown:
        raise InputError(
            f"unknown output format {', '.join(unknown)}; choose from {', '.join(FORMATS)}"
        )
    return tuple(name for name in FORMATS if name in names)


@dataclass(frozen=True)
class OutputRequest:
    """Where and what to write.

    Attributes:
        out_dir: the output folder (created when missing; its parent must exist).
        formats: a subset of :data:`FORMATS`.
        overwrite: replace existing output files of the same names.
        create_dicom_ct: for a non-DICOM input, write the CT as a new DICOM series
            (``ct_dicom/``) so that RTSTRUCT and DICOM SEG can reference it.
    """

    out_dir: Path
    formats: tuple[str, ...] = DEFAULT_FORMATS
    overwrite: bool = False
    create_dicom_ct: bool = False

    def planned(self, with_uncertainty: bool) -> dict[str, Path]:
        """Output kind → path, in writing order (the report last)."""
        kinds = ["labelmap", "probability"]
        if with_uncertainty:
            kinds += ["entropy", "mutual_information"]
        kinds += [name for name in ("seg.nrrd", "rtstruct", "dicom-seg") if name in self.formats]
        kinds.append("report")
        return {kind: self.out_dir / OUTPUT_NAMES[kind] for kind in kinds}


def check_request(
    request: OutputRequest, identity: SeriesIdentity | FileIdentity | None, with_uncertainty: bool
) -> None:
    """Refuse, before any work, what the writing step would refuse.

    Raises:
        InputError: a DICOM format was asked for without a DICOM CT input (and without
            ``create_dicom_ct``).
        OutputError: see :func:`check_destination`.
    """
    check_reference(request, identity)
    check_destination(
        request, with_uncertainty, input_is_dicom=isinstance(identity, SeriesIdentity)
    )


def check_reference(request: OutputRequest, identity: SeriesIdentity | FileIdentity | None) -> None:
    """A DICOM export (RTSTRUCT, DICOM SEG) needs a DICOM CT series to reference.

    ``identity`` may be a :class:`FileIdentity` with no hash yet (known from the file name
    before the file is read).

    Raises:
        InputError: a DICOM format without a DICOM input and without ``create_dicom_ct``.
    """
    wanted = [name for name in DICOM_FORMATS if name in request.formats]
    if wanted and not isinstance(identity, SeriesIdentity) and not request.create_dicom_ct:
        kind = "a NIfTI/NRRD file" if isinstance(identity, FileIdentity) else "not DICOM"
        raise InputError(
            f"{' and '.join(w.upper() for w in wanted)} export needs a DICOM CT input to "
            f"reference (this input is {kind}); read a DICOM CT series, or add "
            "--create-dicom-ct to write the CT as a new DICOM series and reference that"
        )


def check_destination(
    request: OutputRequest, with_uncertainty: bool, *, input_is_dicom: bool | None = None
) -> None:
    """Every problem of the output folder, found before the CT is read.

    Args:
        request: folder, formats, overwrite.
        with_uncertainty: whether the uncertainty maps will be written.
        input_is_dicom: whether the input is a DICOM series (then no CT series is created);
            ``None`` when unknown (the CT series folder is then checked when one is asked for).

    Raises:
        OutputError: the folder is a file, its parent is missing, it cannot be written, or it
            holds outputs of these names and ``overwrite`` is off (each message names the option
            that fixes it).
    """
    out_dir = Path(request.out_dir)
    check_output_folder(out_dir)
    if not request.overwrite:
        existing = [
            path.name for path in request.planned(with_uncertainty).values() if path.exists()
        ]
        if existing:
            raise OutputError(
                f"{out_dir} already holds {', '.join(existing)}; choose another folder or add "
                "--overwrite"
            )
    wants_dicom = any(name in request.formats for name in DICOM_FORMATS)
    if wants_dicom and request.create_dicom_ct and input_is_dicom is not True:
        ct_dir = out_dir / OUTPUT_NAMES["dicom_ct"]
        if ct_dir.exists() and (not ct_dir.is_dir() or any(ct_dir.iterdir())):
            raise OutputError(
                f"{ct_dir} already exists; remove it or choose another -o/--out "
                "(a DICOM series is never overwritten, not even with --overwrite)"
            )


def check_output_folder(out_dir: Path) -> None:
    """Check that ``out_dir`` is a writable folder, or can be created as one.

    Raises:
        OutputError: it is a file, its parent folder is missing, or it cannot be written.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir} exists and is not a folder; choose another -o/--out")
    if not out_dir.exists() and not out_dir.parent.is_dir():
        raise OutputError(
            f"cannot create {out_dir}: folder {out_dir.parent} does not exist; create it or "
            "choose another -o/--out"
        )
    check_folder_writable(out_dir if out_dir.exists() else out_dir.parent)


def check_folder_writable(folder: Path) -> None:
    """Create and delete a hidden probe file in ``folder``: the one test of writability that
    also holds for read-only mounts, network shares and access-control lists.

    Raises:
        OutputError: the folder cannot be written.
    """
    try:
        handle, probe = tempfile.mkstemp(prefix=".autoctv-probe-", dir=folder)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise OutputError(
            f"cannot write into {folder} ({reason}); choose a writable -o/--out"
        ) from None
    os.close(handle)
    with contextlib.suppress(OSError):
        os.unlink(probe)


@dataclass(frozen=True)
class WrittenOutputs:
    """Paths written (kind → path), seconds spent writing, and notes for the user."""

    paths: dict[str, Path]
    write_s: float
    warnings: tuple[str, ...]


def write_outputs(
    prediction: Prediction,
    request: OutputRequest,
    *,
    card: ModelCard,
    identity: SeriesIdentity | FileIdentity | None,
    ct: Volume | None = None,
    report: dict[str, Any] | None = None,
    progress: WriteProgress | None = None,
) -> WrittenOutputs:
    """Write ``prediction`` as ``request`` says, in one transaction, ``report.json`` last.

    Args:
        prediction: the result (its grid is the input CT's).
        request: folder, formats, overwrite, DICOM CT creation.
        card: the model's card (name, version, label colour for the writers).
        identity: the input's identity (a DICOM series to reference, or a file).
        ct: the input CT volume; needed only to create a DICOM CT series.
        report: the report to complete with the outputs and the write time, which is also
            added to its ``timings_s["total"]`` (``report.json`` is written only when given).
        progress: ``(fraction, message)`` after each file.
    """
    with_uncertainty = prediction.uncertainty is not None
    check_request(request, identity, with_uncertainty)
    out_dir = Path(request.out_dir)
    try:
        out_dir.mkdir(exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create {out_dir}: {error.strerror or error}") from None
    started = time.perf_counter()
    notes: list[str] = []
    planned = request.planned(with_uncertainty)
    if report is None:
        planned.pop("report")
    written: dict[str, Path] = {}
    created_dirs: list[Path] = []
    steps = len(planned) + (1 if _creates_dicom_ct(request, identity) else 0)
    done = 0

    def step(message: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(min(1.0, done / max(1, steps)), message)

    with OutputTransaction(overwrite=request.overwrite) as transaction:
        try:
            reference = identity
            if _creates_dicom_ct(request, identity):
                if ct is None:
                    raise ValueError("creating a DICOM CT series needs the CT volume")
                final_dir = out_dir / OUTPUT_NAMES["dicom_ct"]
                temporary_dir = transaction.path_for(final_dir)
                created_dirs.append(temporary_dir)
                reference = _write_dicom_ct(ct, temporary_dir, card, identity)
                written["dicom_ct"] = final_dir
                step("DICOM CT series")
            for kind, path in planned.items():
                if kind == "report":
                    continue
                skipped = _skip_reason(kind, prediction)
                if skipped:
                    notes.append(skipped)
                else:
                    _write_one(kind, prediction, transaction.path_for(path), card, reference)
                    written[kind] = path
                step(path.name)
            if report is not None:
                report["outputs"] = {kind: path.name for kind, path in written.items()}
                report.setdefault("warnings", []).extend(notes)
                timings = report.setdefault("timings_s", {})
                timings["write"] = round(time.perf_counter() - started, 4)
                if "total" in timings:
                    timings["total"] = round(float(timings["total"]) + timings["write"], 4)
                write_report(report, transaction.path_for(planned["report"]))
                written["report"] = planned["report"]
                step("report.json")
        except OSError as error:
            for directory in created_dirs:
                shutil.rmtree(directory, ignore_errors=True)
            raise OutputError(
                f"writing into {out_dir} failed: {error.strerror or error}; nothing was written"
            ) from None
        except BaseException:
            for directory in created_dirs:
                shutil.rmtree(directory, ignore_errors=True)
            raise
    for note in notes:
        logger.warning(note)
    return WrittenOutputs(written, time.perf_counter() - started, tuple(notes))


def remove_stale_outputs(out_dir: Path, written: Mapping[str, Path]) -> None:
    """Delete the output files of an earlier run that a new run did not write (e.g. uncertainty
    maps from a run with ``--uncertainty``). Only for a caller that owns ``out_dir`` (the demo);
    ``autoctv predict --overwrite`` leaves them. The CT series folder is left alone."""
    for kind, name in OUTPUT_NAMES.items():
        path = out_dir / name
        if kind != "dicom_ct" and kind not in written and path.is_file():
            path.unlink()
            logger.info("removed %s of an earlier run", path)


def _creates_dicom_ct(
    request: OutputRequest, identity: SeriesIdentity | FileIdentity | None
) -> bool:
    wants_dicom = any(name in request.formats for name in DICOM_FORMATS)
    return wants_dicom and request.create_dicom_ct and not isinstance(identity, SeriesIdentity)


def _model_text(card: ModelCard) -> str:
    return f"{card.name} {card.version}"


def flat_provenance(provenance: Mapping[str, Any]) -> dict[str, str]:
    """Provenance as key → text (nested values as compact JSON), for file metadata."""
    flat = {}
    for key, value in provenance.items():
        flat[str(key)] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return flat


def _skip_reason(kind: str, prediction: Prediction) -> str | None:
    """Why an output cannot be written for this prediction (``None``: it can)."""
    if kind == "dicom-seg" and not prediction.label.array.any():
        return "DICOM SEG not written: the predicted CTV is empty"
    return None


def _write_one(
    kind: str,
    prediction: Prediction,
    path: Path,
    card: ModelCard,
    reference: SeriesIdentity | FileIdentity | None,
) -> None:
    """Write one output to ``path``."""
    from AutoCTVLib.io.image_files import write_float_map, write_labelmap

    geometry = prediction.label.geometry
    label = card.labels[0]
    description = {"descrip": f"AutoCTV {_model_text(card)}"[:79]}
    if kind == "labelmap":
        write_labelmap(prediction.label.array, geometry, path, metadata=description, overwrite=True)
    elif kind == "probability":
        write_float_map(
            prediction.prob_ctv.array, geometry, path, metadata=description, overwrite=True
        )
    elif kind in ("entropy", "mutual_information"):
        assert prediction.uncertainty is not None
        values = prediction.uncertainty.measure(kind)
        write_float_map(values, geometry, path, metadata=description, overwrite=True)
    elif kind == "seg.nrrd":
        _write_seg_nrrd(prediction, path, card)
    elif kind == "rtstruct":
        assert isinstance(reference, SeriesIdentity)
        from AutoCTVLib.io.rtstruct_write import RoiSpec, write_rtstruct

        roi = RoiSpec(
            name=label.name,
            mask_zyx=prediction.label.array.astype(bool),
            color_rgb=tuple(label.color_rgb),
            interpreted_type="CTV",
            generation_algorithm="AUTOMATIC",
            generation_description=f"AutoCTV {_model_text(card)}"[:_LO],
        )
        write_rtstruct(
            [roi],
            reference,
            geometry,
            path,
            series_description=f"AutoCTV {label.name} {_model_text(card)}"[:_LO],
            structure_set_label=f"AutoCTV {label.name}"[:16],
            provenance=_dicom_provenance(prediction),
            overwrite=True,
        )
    elif kind == "dicom-seg":
        assert isinstance(reference, SeriesIdentity)
        from AutoCTVLib.io.dicom_seg_write import write_dicom_seg

        settings = prediction.provenance.get("settings", {})
        write_dicom_seg(
            prediction.label.array.astype(bool),
            reference,
            path,
            algorithm_name=card.name,
            algorithm_version=card.version,
            ct_folder=reference.source or None,
            segment_label=label.name,
            series_description=f"AutoCTV {label.name} {_model_text(card)}"[:_LO],
            content_label=f"{card.name}_{card.version}",
            algorithm_parameters={
                "model_sha256": card.weights_sha256,
                "device": settings.get("device", ""),
                "mc_samples": settings.get("mc_samples", 0),
                "threshold": settings.get("threshold", ""),
            },
            color_rgb=tuple(label.color_rgb),
            overwrite=True,
        )
    else:  # pragma: no cover - guarded by OutputRequest.planned
        raise ValueError(f"unknown output kind {kind!r}")


def _write_seg_nrrd(prediction: Prediction, path: Path, card: ModelCard) -> None:
    from AutoCTVLib.io.seg_nrrd import CTV_TERMINOLOGY, Segment, write_seg_nrrd

    label = card.labels[0]
    segment = Segment(
        name=label.name,
        mask_zyx=prediction.label.array.astype(bool),
        color_rgb=tuple(c / 255.0 for c in label.color_rgb),
        terminology=CTV_TERMINOLOGY if label.name == terminology.CTV_SEGMENT_NAME else None,
        segment_id=label.name,
        status="inprogress",
        tags={"AutoCTV.model": _model_text(card).replace("|", "/")},
    )
    provenance = flat_provenance(prediction.provenance)
    if prediction.summary is not None:
        provenance["uncertainty_case_score"] = f"{prediction.summary.case_score:.6g}"
        provenance["slices_to_review"] = json.dumps(list(prediction.slices_to_review))
    write_seg_nrrd(
        [segment], prediction.label.geometry, path, provenance=provenance, overwrite=True
    )


def _dicom_provenance(prediction: Prediction) -> dict[str, str]:
    provenance = prediction.provenance
    settings = provenance.get("settings", {})
    return {
        "model": f"{provenance.get('model_name', '')} {provenance.get('model_version', '')}",
        "model_sha256": str(provenance.get("model_sha256", "")),
        "device": str(settings.get("device", "")),
        "mc_samples": str(settings.get("mc_samples", 0)),
        "threshold": str(settings.get("threshold", "")),
        "input": json.dumps(provenance.get("input", {}), sort_keys=True),
    }


def _write_dicom_ct(
    ct: Volume, folder: Path, card: ModelCard, identity: SeriesIdentity | FileIdentity | None
) -> SeriesIdentity:
    """Write ``ct`` as a new DICOM CT series into ``folder`` (a transaction's temporary name)."""
    from AutoCTVLib.io.dicom_ct_write import write_ct_series

    file_hash = identity.sha256 if isinstance(identity, FileIdentity) else ""
    hu = np.asarray(ct.array)
    if hu.size and (hu.min() < -32768 or hu.max() > 32767):
        raise OutputError("the CT values do not fit a DICOM CT series (16-bit Hounsfield units)")
    with contextlib.suppress(FileNotFoundError):
        folder.rmdir()  # write_ct_series creates the folder itself
    return write_ct_series(
        ct,
        folder,
        patient_id=f"AUTOCTV-{file_hash[:12]}" if file_hash else "AUTOCTV",
        patient_name="Unknown^Patient",
        patient_sex="O",
        study_description="AutoCTV converted CT",
        series_description=f"AutoCTV CT for {_model_text(card)}"[:_LO],
        body_part_examined="",
        uid_seed=file_hash or None,
    )
