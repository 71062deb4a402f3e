"""Run an ``autoctv`` command as a child process tree that reports progress and can be cancelled.

A GUI front end (the Slicer module, a browser app) runs ``autoctv ... --progress json`` in a
separate process so that it never freezes and Cancel can stop the work at once. Callbacks are
queued by background reader threads and delivered in the caller's thread by
:meth:`ChildJob.poll` (call it from a GUI timer, e.g. every 100 ms) or by the blocking
:meth:`ChildJob.wait` (scripts, tests). This is the reading side of :mod:`.progress`.

Protocol of the child's output:

* stdout lines that are JSON objects with ``stage`` and ``fraction`` are progress (the format
  of ``AutoCTVLib.cli.progress``, shared by every long command):
  ``{"stage": "inference", "fraction": 0.4, "message": "MC sample 8 of 20"}``
  → ``on_progress(stage, fraction, message)``; ``fraction`` is clipped to 0–1.
* every other stdout line, and every stderr line, is log text → ``on_log(line)``.
* at the end, ``on_finished(returncode, stderr_text)`` is called once. The last non-empty
  stderr line is the error message (the CLI prints ``autoctv: error: <message>``); it is
  available, without that prefix, as :attr:`ChildJob.error_message`.

Process tree: on POSIX the child starts a new session, so it and everything it spawns share
one process group; :meth:`ChildJob.cancel` sends SIGTERM to the group (the CLI then removes
partial outputs and exits), waits ``grace_s`` seconds for the job process, then SIGKILLs what
is left of the group. On Windows the child gets a new process group and the whole tree is
ended with ``taskkill /T /F``; it opens no console window (``CREATE_NO_WINDOW``). Processes
the job leaves behind after a normal exit are killed as well, once they hold its output pipes
open for longer than a second.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from AutoCTVLib.errors import AutoCTVError
from AutoCTVLib.options import ProgressCallback

logger = logging.getLogger(__name__)

LogCallback = Callable[[str], None]
FinishedCallback = Callable[[int, str], None]

#: Poll interval suggested for a GUI timer driving :meth:`ChildJob.poll`.
POLL_INTERVAL_MS = 100

CLI_ERROR_PREFIX = "autoctv: error: "
_IS_WINDOWS = sys.platform == "win32"
_ORPHAN_GRACE_S = 1.0
#: Windows process creation flags (winbase.h): a process group of its own, and no console.
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000


def parse_progress_line(line: str) -> tuple[str, float, str] | None:
    """``(stage, fraction, message)`` if ``line`` is a JSON progress object, else ``None``."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        event = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(event, dict) or "fraction" not in event:
        return None
    if "stage" not in event:
        return None
    fraction = event["fraction"]
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        return None
    fraction = min(1.0, max(0.0, float(fraction)))
    return str(event["stage"]), fraction, str(event.get("message", ""))


def error_message_from_stderr(stderr_text: str) -> str:
    """The last non-empty stderr line, without the CLI's ``autoctv: error:`` prefix."""
    lines = [line.strip() for line in stderr_text.splitlines() if line.strip()]
    if not lines:
        return ""
    last = lines[-1]
    return last[len(CLI_ERROR_PREFIX) :] if last.startswith(CLI_ERROR_PREFIX) else last


def child_python() -> str:
    """The interpreter for child jobs: this one, except inside the 3D Slicer application
    (a ``slicer`` module with an ``app``), where ``sys.executable`` is Slicer itself and Slicer's
    stand-alone interpreter ``PythonSlicer`` is used, found on the PATH or beside the executable.

    Raises:
        AutoCTVError: inside Slicer, ``PythonSlicer`` cannot be found (running Slicer's own
            executable instead would start a second Slicer, not a Python job).
    """
    slicer_module = sys.modules.get("slicer")
    if slicer_module is None or not hasattr(slicer_module, "app"):
        return sys.executable
    found = shutil.which("PythonSlicer")
    beside = Path(sys.executable).resolve().parent
    beside = beside / ("PythonSlicer.exe" if _IS_WINDOWS else "PythonSlicer")
    if found or beside.is_file():
        return found or str(beside)
    raise AutoCTVError(
        "Slicer's Python interpreter (PythonSlicer) was not found on the PATH or beside "
        f"{sys.executable}; AutoCTV runs its work in that interpreter. Reinstall Slicer, or "
        "run AutoCTV from the Python console with logic.auto_contour(...)"
    )


def autoctv_command(arguments: Sequence[str], python: str | None = None) -> list[str]:
    """The command line running ``autoctv <arguments>`` with ``python`` (default:
    :func:`child_python`)."""
    return [python or child_python(), "-m", "AutoCTVLib.cli.main", *arguments]


def child_environment(
    extra_python_paths: Sequence[str] = (), base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Environment for a child job: unbuffered UTF-8 output, ``extra_python_paths`` first.

    A front end passes the folder holding ``AutoCTVLib`` so that the child can import it.
    """
    environment = dict(os.environ if base is None else base)
    environment["PYTHONUNBUFFERED"] = "1"
    environment["PYTHONIOENCODING"] = "utf-8"
    paths = [str(path) for path in extra_python_paths]
    if environment.get("PYTHONPATH"):
        paths.append(environment["PYTHONPATH"])
    if paths:
        environment["PYTHONPATH"] = os.pathsep.join(paths)
    return environment


class ChildJob:
    """One child process (tree) with queued progress, log and completion callbacks.

    Typical use from a GUI::

        job = ChildJob(autoctv_command([...]), on_progress=..., on_finished=...)
        job.start()
        timer.connect("timeout()", job.poll)   # every POLL_INTERVAL_MS
        ...
        job.cancel()                           # returns at once; on_finished follows
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        on_progress: ProgressCallback | None = None,
        on_log: LogCallback | None = None,
        on_finished: FinishedCallback | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        if not command:
            raise ValueError("command must not be empty")
        self.command = [str(part) for part in command]
        self.on_progress = on_progress
        self.on_log = on_log
        self.on_finished = on_finished
        self._env = dict(env) if env is not None else child_environment()
        self._cwd = cwd
        self._process: subprocess.Popen[str] | None = None
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._stderr_lines: list[str] = []
        self._cancel_requested = threading.Event()
        self._tree_ended = threading.Event()
        self._finished = False
        self._returncode: int | None = None

    # -- state -----------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """Process ID of the job process (also its process group ID on POSIX)."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """True from :meth:`start` until ``on_finished`` has been delivered."""
        return self._process is not None and not self._finished

    @property
    def finished(self) -> bool:
        """True once ``on_finished`` has been delivered (by :meth:`poll` or :meth:`wait`)."""
        return self._finished

    @property
    def cancelled(self) -> bool:
        """True if :meth:`cancel` was called before the job finished."""
        return self._cancel_requested.is_set()

    @property
    def returncode(self) -> int | None:
        """Exit status once finished (negative: killed by that signal on POSIX)."""
        return self._returncode

    @property
    def stderr_text(self) -> str:
        """Everything the child wrote to stderr so far."""
        return "".join(self._stderr_lines)

    @property
    def error_message(self) -> str:
        """One-line error of a failed job ("" while running or after success)."""
        if not self._finished or self._returncode == 0:
            return ""
        return error_message_from_stderr(self.stderr_text)

    # -- control ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the child process and its reader threads."""
        if self._process is not None:
            raise RuntimeError("this job was already started")
        options: dict[str, Any] = {}
        if _IS_WINDOWS:
            options["creationflags"] = CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW
        else:
            options["start_new_session"] = True
        logger.debug("starting child job: %s", self.command)
        self._process = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            env=self._env,
            cwd=self._cwd,
            **options,
        )
        readers = [
            threading.Thread(target=self._read_stdout, name="autoctv-stdout", daemon=True),
            threading.Thread(target=self._read_stderr, name="autoctv-stderr", daemon=True),
        ]
        for reader in readers:
            reader.start()
        watcher = threading.Thread(
            target=self._watch, args=(tuple(readers),), name="autoctv-watch", daemon=True
        )
        watcher.start()

    def cancel(self, grace_s: float = 5.0) -> None:
        """Stop the job and everything it started; returns at once.

        SIGTERM goes to the whole process group, then after ``grace_s`` seconds (or as soon
        as the job process has exited) SIGKILL to whatever is left. ``on_finished`` follows
        through :meth:`poll` / :meth:`wait` once the tree is gone.
        """
        if self._process is None or self._finished or self._cancel_requested.is_set():
            return
        self._cancel_requested.set()
        logger.debug("cancelling child job %s", self._process.pid)
        if not _IS_WINDOWS:
            self._signal_group(signal.SIGTERM)
        threading.Thread(target=self._end_tree, args=(grace_s,), daemon=True).start()

    def poll(self) -> bool:
        """Deliver queued callbacks in the calling thread; returns :attr:`finished`."""
        while True:
            try:
                kind, payload = self._events.get_nowait()
            except queue.Empty:
                return self._finished
            self._dispatch(kind, payload)

    def wait(self, timeout_s: float | None = None) -> int:
        """Block until the job has finished, delivering callbacks; returns the exit status.

        Raises:
            TimeoutError: the job is still running after ``timeout_s`` seconds.
        """
        if self._process is None:
            raise RuntimeError("the job has not been started")
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not self._finished:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"child job still running after {timeout_s} s")
            try:
                kind, payload = self._events.get(timeout=remaining)
            except queue.Empty:
                continue
            self._dispatch(kind, payload)
        self.poll()
        assert self._returncode is not None
        return self._returncode

    # -- internals -------------------------------------------------------------------------

    def _dispatch(self, kind: str, payload: Any) -> None:
        if kind == "progress":
            if self.on_progress is not None:
                self.on_progress(*payload)
        elif kind == "log":
            if self.on_log is not None:
                self.on_log(payload)
        elif kind == "finished":
            self._returncode = int(payload)
            self._finished = True
            if self.on_finished is not None:
                self.on_finished(self._returncode, self.stderr_text)

    def _read_stdout(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            line = line.rstrip("\r\n")
            progress = parse_progress_line(line)
            if progress is not None:
                self._events.put(("progress", progress))
            elif line:
                self._events.put(("log", line))

    def _read_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        for line in self._process.stderr:
            self._stderr_lines.append(line)
            if line.strip():
                self._events.put(("log", line.rstrip("\r\n")))

    def _watch(self, readers: tuple[threading.Thread, ...]) -> None:
        assert self._process is not None
        returncode = self._process.wait()
        deadline = time.monotonic() + _ORPHAN_GRACE_S
        for reader in readers:
            reader.join(timeout=max(0.0, deadline - time.monotonic()))
        if any(reader.is_alive() for reader in readers):
            # Processes the job left behind still hold its pipes: end them.
            logger.warning("child job %s left processes running; killing them", self.pid)
            if _IS_WINDOWS:
                self._taskkill_tree()
            else:
                self._signal_group(signal.SIGKILL)
            for reader in readers:
                reader.join(timeout=_ORPHAN_GRACE_S)
        if self._cancel_requested.is_set():
            self._tree_ended.wait()
        if not any(reader.is_alive() for reader in readers):
            for stream in (self._process.stdout, self._process.stderr):
                if stream is not None:
                    stream.close()
        self._events.put(("finished", returncode))

    def _signal_group(self, signum: int) -> None:
        assert self._process is not None
        try:
            os.killpg(self._process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass  # the group is already gone

    def _end_tree(self, grace_s: float) -> None:
        """After SIGTERM: wait up to ``grace_s`` for the job process, then kill the tree."""
        assert self._process is not None
        try:
            if _IS_WINDOWS:
                self._taskkill_tree()
                return
            try:
                self._process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                logger.warning("child job %s ignored SIGTERM; killing it", self._process.pid)
            self._signal_group(signal.SIGKILL)
        finally:
            self._tree_ended.set()

    def _taskkill_tree(self) -> None:
        assert self._process is not None
        subprocess.run(
            ["taskkill", "/PID", str(self._process.pid), "/T", "/F"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
            creationflags=CREATE_NO_WINDOW,
        )
