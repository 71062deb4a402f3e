"""The contouring queue: one case at a time, each in a child ``autoctv predict`` process.

The child is started exactly as the Slicer module starts its jobs
(:class:`AutoCTVLib.cli.child.ChildJob` running ``autoctv predict ... --progress
json`` in its own process group), so a slow case never blocks the server, its progress lines
update the case row, and Cancel ends the whole process tree. Uploads wait in a FIFO queue.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from AutoCTVLib.compat import dicom_seg_supported

from .slicer_glue import ChildJob, autoctv_command, child_environment
from .store import CaseRecord, CaseStore, now_s

logger = logging.getLogger(__name__)

OUTPUT_FOLDER = "out"
#: Downloads: API name → file written by ``autoctv predict`` in the case's ``out`` folder.
DOWNLOADS = {
    "rtstruct": ("rtstruct.dcm", "application/dicom"),
    "seg": ("seg.dcm", "application/dicom"),
    "segnrrd": ("ctv.seg.nrrd", "application/octet-stream"),
    "nifti": ("ctv.nii.gz", "application/gzip"),
    "report": ("report.json", "application/json"),
}


def output_formats() -> str:
    """The ``--format`` list for a case: every format, DICOM SEG where it works here."""
    formats = ["nifti", "seg.nrrd", "rtstruct"]
    if dicom_seg_supported()[0]:
        formats.append("dicom-seg")
    return ",".join(formats)


def predict_arguments(
    record: CaseRecord, case_dir: Path, *, model: Path | None, device: str
) -> list[str]:
    """The ``autoctv predict`` arguments of one case (without the interpreter)."""
    arguments = ["predict", str(case_dir / record.input_path), "-o", str(case_dir / OUTPUT_FOLDER)]
    arguments += ["--format", output_formats(), "--progress", "json", "--device", device]
    if record.input_kind != "dicom":
        arguments.append("--create-dicom-ct")
    if record.series_uid:
        arguments += ["--series-uid", record.series_uid]
    if record.mc_samples > 0:
        arguments += ["--uncertainty", str(record.mc_samples)]
    if model is not None:
        arguments += ["--model", str(model)]
    return arguments


class CaseQueue:
    """A FIFO of case IDs worked off by one background thread.

    Args:
        store: the case table.
        model: model file for ``--model`` (None: the bundled model).
        device: ``--device`` of the child.
        python: interpreter of the child (default: this one).
        extra_arguments: appended to every ``autoctv predict`` (tests: ``--threads 1``).
    """

    def __init__(
        self,
        store: CaseStore,
        *,
        model: Path | None = None,
        device: str = "auto",
        python: str | None = None,
        extra_arguments: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.model = model
        self.device = device
        self.python = python or sys.executable
        self.extra_arguments = list(extra_arguments)
        self._pending: deque[str] = deque()
        self._condition = threading.Condition()
        self._current_id: str | None = None
        self._current_job: ChildJob | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="autoctv-web-queue", daemon=True)

    def start(self) -> None:
        """Queue again what a stopped server left unfinished, then start working."""
        for record in self.store.interrupted():
            logger.info("re-queueing case %s left unfinished by the last run", record.id)
            if record.child_pid:
                end_orphan_child(record.child_pid, self.store.case_dir(record.id))
            self._pending.append(record.id)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Cancel the running case (it is queued again at the next start) and end the thread."""
        with self._condition:
            self._stopping = True
            job = self._current_job
            self._condition.notify_all()
        if job is not None:
            job.cancel(grace_s=2.0)
        self._thread.join(timeout_s)

    def submit(self, case_id: str) -> None:
        """Add a (queued) case at the end of the queue."""
        with self._condition:
            self._pending.append(case_id)
            self._condition.notify_all()

    def position(self, case_id: str) -> int | None:
        """0 for the running case, 1… for waiting ones, None if not in the queue."""
        with self._condition:
            if case_id == self._current_id:
                return 0
            pending = list(self._pending)
        return pending.index(case_id) + 1 if case_id in pending else None

    def cancel(self, case_id: str, timeout_s: float = 15.0) -> bool:
        """Cancel a waiting or running case; True if it was waiting or running.

        Returns once the child process tree of a running case is gone (or after
        ``timeout_s``), so the caller may delete the case's folder.
        """
        with self._condition:
            if case_id in self._pending:
                self._pending.remove(case_id)
                self.store.update(case_id, status="cancelled", finished_at=now_s(), stage="")
                return True
            if case_id != self._current_id or self._current_job is None:
                return False
            job = self._current_job
        job.cancel(grace_s=2.0)
        with self._condition:
            self._condition.wait_for(lambda: self._current_id != case_id, timeout_s)
        return True

    # -- the worker thread -----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._stopping or bool(self._pending))
                if self._stopping:
                    return
                case_id = self._pending.popleft()
                self._current_id = case_id
            try:
                self._contour(case_id)
            except Exception:  # a broken case must not stop the queue
                logger.exception("case %s failed", case_id)
                self.store.update(case_id, status="failed", error="internal error; see the log")
            finally:
                with self._condition:
                    self._current_id = None
                    self._current_job = None
                    self._condition.notify_all()

    def _contour(self, case_id: str) -> None:
        record = self.store.get(case_id)
        if record is None or record.status != "queued":
            return
        case_dir = self.store.case_dir(case_id)
        out_dir = case_dir / OUTPUT_FOLDER
        if out_dir.exists():
            shutil.rmtree(out_dir)
        arguments = predict_arguments(record, case_dir, model=self.model, device=self.device)
        command = autoctv_command([*arguments, *self.extra_arguments], python=self.python)

        def on_progress(stage: str, fraction: float, message: str) -> None:
            self.store.update(case_id, progress=fraction, stage=message or stage)

        job = ChildJob(command, on_progress=on_progress, env=child_environment(), cwd=case_dir)
        with self._condition:
            if self._stopping:
                return
            self._current_job = job
            self.store.update(case_id, status="running", started_at=now_s(), progress=0.0)
            job.start()
            self.store.update(case_id, child_pid=job.pid)
        returncode = job.wait()
        if self.store.get(case_id) is not None:
            self.store.update(case_id, child_pid=None)
        if self.store.get(case_id) is None:
            return  # deleted meanwhile
        if job.cancelled:
            if self._stopping:
                self.store.update(case_id, status="queued", progress=0.0, stage="")
            else:
                self.store.update(case_id, status="cancelled", finished_at=now_s(), stage="")
            shutil.rmtree(out_dir, ignore_errors=True)
            return
        if returncode != 0:
            message = job.error_message or f"autoctv stopped with exit status {returncode}"
            self.store.update(case_id, status="failed", error=message, finished_at=now_s())
            return
        model = _report_model(out_dir / "report.json")
        self.store.update(
            case_id, status="done", progress=1.0, stage="done", finished_at=now_s(), **model
        )


def end_orphan_child(pid: int, case_dir: Path) -> bool:
    """Kill the process group of a child left running by a server that was killed (POSIX).

    The child runs in its own session, so it outlives a ``kill -9`` of the server. It is
    ended only if ``/proc/<pid>/cmdline`` shows an ``autoctv predict`` of this very case (a
    reused process ID is left alone). Returns True if a process group was signalled.
    """
    if sys.platform == "win32":
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    words = [part.decode("utf-8", errors="replace") for part in cmdline]
    if "predict" not in words or not any(word.startswith(str(case_dir)) for word in words):
        return False
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    for _ in range(50):  # up to 5 s for it to disappear
        if not Path(f"/proc/{pid}").exists():
            break
        time.sleep(0.1)
    logger.warning("ended the orphaned contouring process %s of %s", pid, case_dir.name)
    return True


def _report_model(report_path: Path) -> dict[str, str]:
    """Model name, version and sha256 from ``report.json`` (empty strings if missing)."""
    try:
        model = json.loads(report_path.read_text(encoding="utf-8")).get("model", {})
    except (OSError, ValueError):
        model = {}
    return {
        "model_name": str(model.get("name", "")),
        "model_version": str(model.get("version", "")),
        "model_sha256": str(model.get("sha256", "")),
    }
