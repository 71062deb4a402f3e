"""Long AutoCTV work as a child ``autoctv`` process working in its own temporary folder.

A :class:`CommandJob` writes its inputs into a fresh ``AutoCTV-*`` temporary folder, runs
``autoctv <command> ... --progress json`` there as a :class:`~.child.ChildJob` (the GUI
never freezes and Cancel ends the whole process tree), reads the outputs back when the child
succeeds, and deletes the folder in every case: success, failure, cancel, and :meth:`close`
(module reload, scene close, application exit). The folder holds the patient's CT, so it must
never be left behind. Outputs are read in the thread that calls :meth:`CommandJob.poll` /
:meth:`CommandJob.wait`, so the caller may create MRML nodes from them at once.

The file contract with the command line::

    <work>/ct.nrrd                           input CT (float32 HU; NRRD keeps the exact grid)
    <work>/out/ctv.nii.gz                    ``autoctv predict``: labelmap 0/1 on the CT grid
    <work>/out/uncertainty_entropy.nii.gz    predictive entropy, bits (with --uncertainty)
    <work>/out/report.json                   model, settings, uncertainty summary
    <work>/sparse.nrrd                       ``autoctv complete``: the drawn segment, 0/1
    <work>/out/completed.nii.gz              ``autoctv complete``: the completed labelmap
"""

from __future__ import annotations

import atexit
import json
import logging
import shutil
import tempfile
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import SimpleITK as sitk

from AutoCTVLib.cli.child import ChildJob, autoctv_command, child_environment
from AutoCTVLib.errors import AutoCTVError, GeometryError, InputError
from AutoCTVLib.io.image_files import (
    describe_grid_difference,
    read_labelmap,
    write_float_map,
    write_labelmap,
)
from AutoCTVLib.options import ProgressCallback
from AutoCTVLib.volume import Geometry, Volume

logger = logging.getLogger(__name__)

WORK_DIR_PREFIX = "AutoCTV-"
OUTPUT_FOLDER = "out"
T = TypeVar("T")

#: Jobs not yet finished; :func:`close_all_jobs` ends them (also at interpreter exit).
_LIVE_JOBS: weakref.WeakSet[CommandJob] = weakref.WeakSet()


@dataclass(frozen=True)
class PredictionOutputs:
    """What ``autoctv predict`` produced, as arrays (z, y, x) on the input CT's grid.

    Attributes:
        label_zyx: uint8 0/1 CTV labelmap.
        entropy_zyx: float32 predictive entropy (bits, 0–1), or None without uncertainty.
        report: the parsed ``report.json`` (empty dict if there was none).
    """

    label_zyx: np.ndarray
    entropy_zyx: np.ndarray | None = None
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
    """Read the label, the entropy map and the report of ``autoctv predict -o out_dir``.

    Raises:
        InputError: the labelmap is missing or unreadable.
        GeometryError: an output is not on the input grid.
    """
    label = read_labelmap(out_dir / "ctv.nii.gz", reference=geometry).array
    entropy_path = out_dir / "uncertainty_entropy.nii.gz"
    report_path = out_dir / "report.json"
    return PredictionOutputs(
        label_zyx=(label != 0).astype(np.uint8),
        entropy_zyx=read_float_map_on(entropy_path, geometry) if entropy_path.is_file() else None,
        report=json.loads(report_path.read_text(encoding="utf-8")) if report_path.is_file() else {},
    )


class CommandJob(Generic[T]):
    """One ``autoctv`` child run in a temporary folder, with outputs read back on success.

    Args:
        prepare: writes the inputs into the (new, empty) work folder and returns the
            ``autoctv`` arguments (without the interpreter).
        read_outputs: turns the work folder into the result after a successful run.
        on_progress: ``(stage, fraction 0–1, message)`` for every progress line.
        on_finished: ``(result or None, error message)`` exactly once: result on success;
            ``None`` and ``""`` when cancelled; ``None`` and the one-line error otherwise.
            Not called after :meth:`close`.
        python_paths: folders the child needs on ``PYTHONPATH``.
        python: interpreter for the child (default: :func:`~AutoCTVLib.cli.child.child_python`).
        temp_root: parent folder of the work folder (default: the system's temporary folder).
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
        """True from :meth:`start` until the job finished or was closed."""
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
            AutoCTVError: the inputs cannot be written or the interpreter is missing (the work
                folder is removed again).
        """
        if self._job is not None:
            raise RuntimeError("this job was already started")
        self.work_dir = Path(tempfile.mkdtemp(prefix=WORK_DIR_PREFIX, dir=self._temp_root))
        try:
            command = autoctv_command(list(self._prepare(self.work_dir)), python=self._python)
            self._job = ChildJob(
                command,
                on_progress=self.on_progress,
                on_log=lambda line: logger.debug("autoctv: %s", line),
                on_finished=self._child_finished,
                env=child_environment(self._python_paths),
                cwd=str(self.work_dir),
            )
            self._job.start()
        except BaseException:
            self._remove_work_dir()
            self._job = None
            raise
        _LIVE_JOBS.add(self)

    def poll(self) -> bool:
        """Deliver progress and, at the end, the result; returns :attr:`finished`."""
        if self._job is not None and not self._done:
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

    def close(self, timeout_s: float = 10.0) -> None:
        """End the job now, without callbacks, and delete its work folder before returning.

        For a module reload, a scene close or the application's exit, when nobody will poll
        the job any more. Harmless on a finished job.
        """
        if self._job is not None and not self._done:
            self._done = True
            self._job.on_progress = self._job.on_finished = None
            self._job.cancel(grace_s=min(2.0, timeout_s))
            try:
                self._job.wait(timeout_s)
            except TimeoutError:
                logger.warning("child job %s did not end within %s s", self.pid, timeout_s)
        self._remove_work_dir()
        _LIVE_JOBS.discard(self)

    # -- internals -------------------------------------------------------------------------

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
            _LIVE_JOBS.discard(self)
        if self.on_finished is not None:
            self.on_finished(self.result, self.error_message)

    def _remove_work_dir(self) -> None:
        if self.work_dir is not None and self.work_dir.exists():
            shutil.rmtree(self.work_dir, ignore_errors=True)


def close_all_jobs() -> int:
    """:meth:`CommandJob.close` every job still running; returns how many there were."""
    jobs = list(_LIVE_JOBS)
    for job in jobs:
        job.close()
    return len(jobs)


atexit.register(close_all_jobs)


def prepare_prediction(
    ct: Volume, *, model_path: Path | None, device: str, mc_samples: int
) -> Callable[[Path], list[str]]:
    """A ``prepare`` step: the CT as NRRD, and the ``autoctv predict`` arguments."""

    def prepare(work_dir: Path) -> list[str]:
        ct_path = write_float_map(ct.array, ct.geometry, work_dir / "ct.nrrd")
        arguments = ["predict", str(ct_path), "-o", str(work_dir / OUTPUT_FOLDER)]
        arguments += ["--format", "nifti", "--device", device, "--progress", "json"]
        if model_path is not None:
            arguments += ["--model", str(model_path)]
        if mc_samples > 0:
            arguments += ["--uncertainty", str(int(mc_samples))]
        return arguments

    return prepare


def prepare_completion(
    ct: Volume, sparse_zyx: np.ndarray, *, method: str, model_path: Path | None, device: str
) -> Callable[[Path], list[str]]:
    """A ``prepare`` step: CT and drawing as NRRD, and the ``autoctv complete`` arguments."""

    def prepare(work_dir: Path) -> list[str]:
        ct_path = write_float_map(ct.array, ct.geometry, work_dir / "ct.nrrd")
        sparse_path = write_labelmap(sparse_zyx, ct.geometry, work_dir / "sparse.nrrd")
        out_dir = work_dir / OUTPUT_FOLDER
        out_dir.mkdir()
        arguments = ["complete", str(ct_path), str(sparse_path)]
        arguments += ["-o", str(out_dir / "completed.nii.gz"), "--method", method]
        arguments += ["--device", device, "--progress", "json"]
        if model_path is not None:
            arguments += ["--model", str(model_path)]
        return arguments

    return prepare


def read_completion_output(geometry: Geometry) -> Callable[[Path], np.ndarray]:
    """A ``read_outputs`` step: the completed labelmap (uint8 0/1, z, y, x) on ``geometry``."""

    def read(work_dir: Path) -> np.ndarray:
        path = work_dir / OUTPUT_FOLDER / "completed.nii.gz"
        return (read_labelmap(path, reference=geometry).array != 0).astype(np.uint8)

    return read
