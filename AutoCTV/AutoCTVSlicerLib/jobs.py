"""Long AutoCTV work as a child ``autoctv`` process working in its own temporary folder.

A :class:`CommandJob` writes its inputs into a fresh temporary folder, runs
``autoctv <command> ... --progress json`` there as a :class:`~.child_process.ChildJob` (so the GUI
never freezes and Cancel ends the whole process tree), reads the outputs back when the child
succeeds, and deletes the folder in every case (success, failure, cancel). Reading the outputs
happens in the thread that calls :meth:`CommandJob.poll` / :meth:`CommandJob.wait`, so the
caller may create MRML nodes from them right away.

The file contract with the command line (``autoctv predict``)::

    <work>/ct.nrrd                       input CT (float32 HU, exact grid: NRRD keeps doubles)
    <work>/out/ctv.nii.gz                labelmap 0/1 on the input grid
    <work>/out/ctv_probability.nii.gz    mean probability (float32)
    <work>/out/uncertainty_entropy.nii.gz             predictive entropy (with --uncertainty)
    <work>/out/uncertainty_mutual_information.nii.gz  mutual information (with --uncertainty)
    <work>/out/report.json               model, settings, uncertainty.case_score, slices_to_review

and for ``autoctv complete``: ``<work>/ct.nrrd`` and ``<work>/sparse.nrrd`` (the drawn segment,
0/1; the library infers which slices were drawn) → ``<work>/out/completed.nii.gz``.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import SimpleITK as sitk

from AutoCTVLib.errors import AutoCTVError, GeometryError, InputError
from AutoCTVLib.io.image_files import describe_grid_difference, read_labelmap, write_float_map
from AutoCTVLib.volume import Geometry, Volume

from .child_process import ChildJob, autoctv_command, child_environment

logger = logging.getLogger(__name__)

CT_FILE_NAME = "ct.nrrd"
SPARSE_FILE_NAME = "sparse.nrrd"
OUTPUT_FOLDER_NAME = "out"
LABEL_FILE = "ctv.nii.gz"
PROBABILITY_FILE = "ctv_probability.nii.gz"
ENTROPY_FILE = "uncertainty_entropy.nii.gz"
MUTUAL_INFORMATION_FILE = "uncertainty_mutual_information.nii.gz"
REPORT_FILE = "report.json"
COMPLETED_FILE = "completed.nii.gz"

T = TypeVar("T")
ProgressCallback = Callable[[str, float, str], None]


class JobFailedError(AutoCTVError):
    """The child ``autoctv`` process ended with an error (its message is this error's text)."""


@dataclass(frozen=True)
class PredictionOutputs:
    """What ``autoctv predict`` produced, as arrays (z, y, x) on the input CT's grid.

    Attributes:
        label_zyx: uint8 0/1 CTV labelmap.
        probability_zyx: float32 mean probability, or None if not written.
        entropy_zyx: float32 predictive entropy (bits), or None without uncertainty.
        mutual_information_zyx: float32 mutual information (bits), or None.
        report: the parsed ``report.json`` (empty dict if there was none).
    """

    label_zyx: np.ndarray
    probability_zyx: np.ndarray | None = None
    entropy_zyx: np.ndarray | None = None
    mutual_information_zyx: np.ndarray | None = None
    report: dict[str, Any] = field(default_factory=dict)


def read_float_map_on(path: Path, geometry: Geometry) -> np.ndarray:
    """A float32 map file as an array (z, y, x), checked to lie on ``geometry``.

    Raises:
        InputError: the file cannot be read.
        GeometryError: its grid is not ``geometry`` (within NIfTI's float32 precision).
    """
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise InputError(f"{path.name} cannot be read as an image file") from error
    found = Geometry.from_sitk(image)
    if not found.is_close(geometry):
        difference = describe_grid_difference(found, geometry)
        raise GeometryError(f"{path.name} does not lie on the CT's grid: {difference}")
    return sitk.GetArrayFromImage(image).astype(np.float32, copy=False)


def read_prediction_outputs(out_dir: Path, geometry: Geometry) -> PredictionOutputs:
    """Read the files of ``autoctv predict -o out_dir`` back onto ``geometry``.

    Raises:
        InputError: the labelmap is missing or unreadable.
        GeometryError: an output is not on the input grid.
    """
    label = read_labelmap(out_dir / LABEL_FILE, reference=geometry).array

    def optional(name: str) -> np.ndarray | None:
        path = out_dir / name
        return read_float_map_on(path, geometry) if path.is_file() else None

    report_path = out_dir / REPORT_FILE
    report = json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else {}
    return PredictionOutputs(
        label_zyx=(label != 0).astype(np.uint8),
        probability_zyx=optional(PROBABILITY_FILE),
        entropy_zyx=optional(ENTROPY_FILE),
        mutual_information_zyx=optional(MUTUAL_INFORMATION_FILE),
        report=report,
    )


def predict_arguments(
    ct_path: Path,
    out_dir: Path,
    *,
    model_path: Path | None,
    device: str,
    mc_samples: int,
) -> list[str]:
    """``autoctv predict`` arguments for one CT (JSON progress on stdout)."""
    arguments = [
        "predict",
        str(ct_path),
        "-o",
        str(out_dir),
        "--format",
        "nifti",
        "--device",
        device,
        "--progress",
        "json",
    ]
    if model_path is not None:
        arguments += ["--model", str(model_path)]
    if mc_samples > 0:
        arguments += ["--uncertainty", str(int(mc_samples))]
    return arguments


def complete_arguments(
    ct_path: Path,
    sparse_path: Path,
    out_path: Path,
    *,
    method: str,
    model_path: Path | None,
    device: str,
) -> list[str]:
    """``autoctv complete`` arguments (JSON progress on stdout)."""
    arguments = [
        "complete",
        str(ct_path),
        str(sparse_path),
        "-o",
        str(out_path),
        "--method",
        method,
        "--device",
        device,
        "--progress",
        "json",
    ]
    if model_path is not None:
        arguments += ["--model", str(model_path)]
    return arguments


class CommandJob(Generic[T]):
    """One ``autoctv`` child run in a temporary folder, with outputs read back on success.

    Args:
        prepare: writes the inputs into the (new, empty) work folder and returns the
            ``autoctv`` arguments (without the interpreter).
        read_outputs: turns the work folder into the result after a successful run.
        on_progress: ``(stage, fraction 0–1, message)`` for every progress line.
        on_finished: ``(result or None, error message)`` exactly once: result on success;
            ``None`` and ``""`` when cancelled; ``None`` and the one-line error otherwise.
        python_paths: folders the child needs on ``PYTHONPATH`` (the one holding
            ``AutoCTVLib`` when it is not installed as a package).
        python: interpreter for the child (default: ``PythonSlicer`` in Slicer).
    """

    def __init__(
        self,
        prepare: Callable[[Path], Sequence[str]],
        read_outputs: Callable[[Path], T],
        *,
        on_progress: ProgressCallback | None = None,
        on_finished: Callable[[T | None, str], None] | None = None,
        python_paths: Sequence[str] = (),
        python: str | None = None,
        temp_root: str | None = None,
    ) -> None:
        self._prepare = prepare
        self._read_outputs = read_outputs
        self.on_progress = on_progress
        self.on_finished = on_finished
        self._python_paths = list(python_paths)
        self._python = python
        self._temp_root = temp_root
        self.work_dir: Path | None = None
        self._job: ChildJob | None = None
        self.result: T | None = None
        self.error_message = ""
        self._done = False

    @property
    def running(self) -> bool:
        """True from :meth:`start` until ``on_finished`` has been called."""
        return self._job is not None and not self._done

    @property
    def finished(self) -> bool:
        return self._done

    @property
    def cancelled(self) -> bool:
        return self._job is not None and self._job.cancelled

    @property
    def pid(self) -> int | None:
        return self._job.pid if self._job is not None else None

    def start(self) -> None:
        """Prepare the inputs and start the child process.

        Raises:
            AutoCTVError: the inputs cannot be written (the work folder is removed again).
        """
        if self._job is not None:
            raise RuntimeError("this job was already started")
        self.work_dir = Path(tempfile.mkdtemp(prefix="AutoCTV-", dir=self._temp_root))
        try:
            arguments = list(self._prepare(self.work_dir))
            command = autoctv_command(arguments, python=self._python)
            self._job = ChildJob(
                command,
                on_progress=self._progress,
                on_log=self._log,
                on_finished=self._child_finished,
                env=child_environment(self._python_paths),
                cwd=str(self.work_dir),
            )
            self._job.start()
        except BaseException:
            self._remove_work_dir()
            self._job = None
            raise

    def poll(self) -> bool:
        """Deliver progress and, at the end, the result; returns :attr:`finished`."""
        if self._job is not None:
            self._job.poll()
        return self._done

    def wait(self, timeout_s: float | None = None) -> T | None:
        """Block until finished (delivering callbacks); returns the result (None if none)."""
        if self._job is None:
            raise RuntimeError("the job has not been started")
        self._job.wait(timeout_s)
        return self.result

    def cancel(self, grace_s: float = 5.0) -> None:
        """Stop the child process tree; ``on_finished(None, "")`` follows via poll/wait."""
        if self._job is not None and not self._done:
            self._job.cancel(grace_s)

    # -- internals -------------------------------------------------------------------------

    def _progress(self, stage: str, fraction: float, message: str) -> None:
        if self.on_progress is not None:
            self.on_progress(stage, fraction, message)

    @staticmethod
    def _log(line: str) -> None:
        logger.debug("autoctv: %s", line)

    def _child_finished(self, returncode: int, stderr_text: str) -> None:
        assert self._job is not None
        try:
            if self._job.cancelled:
                self.error_message = ""
            elif returncode != 0:
                self.error_message = self._job.error_message or (
                    f"autoctv stopped with exit status {returncode}"
                )
            else:
                assert self.work_dir is not None
                try:
                    self.result = self._read_outputs(self.work_dir)
                except AutoCTVError as error:
                    self.error_message = str(error)
        finally:
            self._remove_work_dir()
            self._done = True
        if self.on_finished is not None:
            self.on_finished(self.result, self.error_message)

    def _remove_work_dir(self) -> None:
        if self.work_dir is not None and self.work_dir.exists():
            shutil.rmtree(self.work_dir, ignore_errors=True)


def prepare_prediction(
    ct: Volume, *, model_path: Path | None, device: str, mc_samples: int
) -> Callable[[Path], list[str]]:
    """A ``prepare`` step writing the CT as NRRD and returning ``autoctv predict`` arguments."""

    def prepare(work_dir: Path) -> list[str]:
        ct_path = write_float_map(ct.array, ct.geometry, work_dir / CT_FILE_NAME)
        return predict_arguments(
            ct_path,
            work_dir / OUTPUT_FOLDER_NAME,
            model_path=model_path,
            device=device,
            mc_samples=mc_samples,
        )

    return prepare


def prepare_completion(
    ct: Volume,
    sparse_zyx: np.ndarray,
    *,
    method: str,
    model_path: Path | None,
    device: str,
) -> Callable[[Path], list[str]]:
    """A ``prepare`` step writing CT and sparse labelmap and returning ``autoctv complete`` args."""
    from AutoCTVLib.io.image_files import write_labelmap

    def prepare(work_dir: Path) -> list[str]:
        ct_path = write_float_map(ct.array, ct.geometry, work_dir / CT_FILE_NAME)
        sparse_path = write_labelmap(sparse_zyx, ct.geometry, work_dir / SPARSE_FILE_NAME)
        out_dir = work_dir / OUTPUT_FOLDER_NAME
        out_dir.mkdir()
        return complete_arguments(
            ct_path,
            sparse_path,
            out_dir / COMPLETED_FILE,
            method=method,
            model_path=model_path,
            device=device,
        )

    return prepare


def read_completion_output(geometry: Geometry) -> Callable[[Path], np.ndarray]:
    """A ``read_outputs`` step returning the completed labelmap (uint8 0/1) on ``geometry``."""

    def read(work_dir: Path) -> np.ndarray:
        labels = read_labelmap(work_dir / OUTPUT_FOLDER_NAME / COMPLETED_FILE, reference=geometry)
        return (labels.array != 0).astype(np.uint8)

    return read
