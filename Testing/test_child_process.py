"""Child-process jobs: JSON progress, log lines, errors, and cancelling a whole process tree.

The tests run real Python child processes (small inline scripts, and the real ``autoctv``
entry point). Two cannot: the Windows start options are checked with a fake ``Popen`` (this
machine is not Windows), and the PythonSlicer lookup with a fake ``slicer`` application.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
import time
from pathlib import Path
from typing import ClassVar

import pytest
from mrml_support import SLICER_MODULE_DIR  # also puts the Slicer module folder on sys.path

from AutoCTVLib import __version__
from AutoCTVLib.cli.child import (
    ChildJob,
    autoctv_command,
    child_environment,
    child_python,
    error_message_from_stderr,
    parse_progress_line,
)

REPO_ROOT = SLICER_MODULE_DIR.parent
posix_only = pytest.mark.skipif(os.name == "nt", reason="process groups and /proc are POSIX")


class Recorder:
    """Collects every callback of a job, in order."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def progress(self, stage: str, fraction: float, message: str) -> None:
        self.events.append(("progress", stage, fraction, message))

    def log(self, line: str) -> None:
        self.events.append(("log", line))

    def finished(self, returncode: int, stderr_text: str) -> None:
        self.events.append(("finished", returncode, stderr_text))

    def of_kind(self, kind: str) -> list[tuple]:
        return [event for event in self.events if event[0] == kind]

    def job(self, script: str, **kwargs) -> ChildJob:
        return ChildJob(
            [sys.executable, "-c", textwrap.dedent(script)],
            on_progress=self.progress,
            on_log=self.log,
            on_finished=self.finished,
            **kwargs,
        )


def _process_gone(pid: int) -> bool:
    """True once ``pid`` no longer runs.

    A terminated process that its parent (here possibly a container's init) has not reaped yet
    is a zombie: it still answers ``os.kill(pid, 0)`` but runs no code and holds no resources.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def _wait_until_gone(pids: list[int], timeout_s: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if not _process_gone(pid)]
        if not alive:
            return []
        time.sleep(0.05)
    return [pid for pid in pids if not _process_gone(pid)]


PROGRESS_SCRIPT = """
    import json, sys, time
    def progress(stage, fraction, message=""):
        print(json.dumps({"stage": stage, "fraction": fraction, "message": message}), flush=True)
    progress("load", 0.0, "reading CT")
    print("plain log line", flush=True)
    time.sleep(0.05)
    progress("inference", 0.5)
    print(json.dumps({"note": "a JSON line that is not progress"}), flush=True)
    progress("inference", 1.7, "over-full fraction is clipped")
    print("a warning on stderr", file=sys.stderr, flush=True)
    progress("write", 1.0, "done")
"""


def test_progress_lines_are_parsed_in_order() -> None:
    recorder = Recorder()
    job = recorder.job(PROGRESS_SCRIPT)
    job.start()
    assert job.running
    assert job.wait(timeout_s=20) == 0
    assert recorder.of_kind("progress") == [
        ("progress", "load", 0.0, "reading CT"),
        ("progress", "inference", 0.5, ""),
        ("progress", "inference", 1.0, "over-full fraction is clipped"),
        ("progress", "write", 1.0, "done"),
    ]
    logs = [event[1] for event in recorder.of_kind("log")]
    assert "plain log line" in logs
    assert '{"note": "a JSON line that is not progress"}' in logs
    assert "a warning on stderr" in logs
    assert recorder.events[-1] == ("finished", 0, "a warning on stderr\n")
    assert len(recorder.of_kind("finished")) == 1
    assert job.finished and not job.running and not job.cancelled
    assert job.error_message == ""


def test_progress_streams_while_the_child_runs(tmp_path) -> None:
    """poll() delivers a progress line before the child exits (no buffering until exit)."""
    go_file = tmp_path / "go"
    recorder = Recorder()
    job = recorder.job(
        f"""
        import json, os, time
        print(json.dumps({{"stage": "first", "fraction": 0.1}}), flush=True)
        deadline = time.monotonic() + 20
        while not os.path.exists({str(go_file)!r}) and time.monotonic() < deadline:
            time.sleep(0.01)
        print(json.dumps({{"stage": "second", "fraction": 1.0}}), flush=True)
        """
    )
    job.start()
    deadline = time.monotonic() + 20
    while not recorder.of_kind("progress") and time.monotonic() < deadline:
        assert not job.poll(), "the child finished before it was told to go on"
        time.sleep(0.01)
    assert [event[1] for event in recorder.of_kind("progress")] == ["first"]
    go_file.touch()
    while not job.poll() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.finished
    assert [event[1] for event in recorder.of_kind("progress")] == ["first", "second"]


def test_failing_child_reports_its_one_line_error() -> None:
    recorder = Recorder()
    job = recorder.job(
        """
        import sys
        print("WARNING AutoCTVLib.io: slice spacing varies", file=sys.stderr)
        print("autoctv: error: the CT series has only 2 slices; at least 16 are needed",
              file=sys.stderr)
        sys.exit(2)
        """
    )
    job.start()
    assert job.wait(timeout_s=20) == 2
    (finished,) = recorder.of_kind("finished")
    assert finished[1] == 2
    assert finished[2].splitlines()[-1].startswith("autoctv: error: the CT series")
    assert job.error_message == "the CT series has only 2 slices; at least 16 are needed"


def test_real_autoctv_entry_point_runs_as_a_child() -> None:
    recorder = Recorder()
    job = ChildJob(
        autoctv_command(["--version"]),
        on_log=recorder.log,
        on_finished=recorder.finished,
        env=child_environment([str(REPO_ROOT)]),
    )
    job.start()
    assert job.wait(timeout_s=60) == 0, job.stderr_text
    assert ("log", f"autoctv {__version__}") in recorder.events


def test_real_autoctv_usage_error_is_reported() -> None:
    job = ChildJob(autoctv_command(["no-such-command"]), env=child_environment([str(REPO_ROOT)]))
    job.start()
    assert job.wait(timeout_s=60) == 2
    assert "invalid choice: 'no-such-command'" in job.error_message


GRANDCHILD_SCRIPT = """
    import json, signal, subprocess, sys, time
    ignore_term = {ignore_term}
    grandchild_code = (
        "import signal, time\\n"
        + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n" if ignore_term else "")
        + "time.sleep(120)\\n"
    )
    grandchild = subprocess.Popen([sys.executable, "-c", grandchild_code])
    if ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(0.3)  # let the grandchild install its signal handler
    print(json.dumps({{"child": __import__("os").getpid(), "grandchild": grandchild.pid}}),
          flush=True)
    time.sleep(120)
"""


def _start_tree(recorder: Recorder, ignore_term: bool) -> tuple[ChildJob, dict]:
    job = recorder.job(GRANDCHILD_SCRIPT.format(ignore_term=ignore_term))
    job.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        job.poll()
        for event in recorder.of_kind("log"):
            if event[1].startswith('{"child"'):
                return job, json.loads(event[1])
        time.sleep(0.02)
    job.cancel(grace_s=0.1)
    raise AssertionError("the child did not report its process IDs")


@posix_only
@pytest.mark.mrml
def test_cancel_kills_child_and_grandchild_and_leaves_the_scene_alone() -> None:
    from mrml_support import new_scene, scene_node_ids

    scene = new_scene()
    scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "CT")
    nodes_before = scene_node_ids(scene)

    recorder = Recorder()
    job, pids = _start_tree(recorder, ignore_term=False)
    assert pids["child"] == job.pid
    assert not _process_gone(pids["grandchild"])
    started = time.monotonic()
    job.cancel()
    returncode = job.wait(timeout_s=20)
    assert time.monotonic() - started < 5.0  # SIGTERM sufficed; no grace period spent
    assert job.cancelled
    assert returncode != 0
    assert _wait_until_gone([pids["child"], pids["grandchild"]]) == []
    assert len(recorder.of_kind("finished")) == 1
    assert scene_node_ids(scene) == nodes_before


@posix_only
def test_cancel_escalates_to_sigkill_when_sigterm_is_ignored() -> None:
    recorder = Recorder()
    job, pids = _start_tree(recorder, ignore_term=True)
    job.cancel(grace_s=0.5)
    returncode = job.wait(timeout_s=20)
    assert returncode == -9  # SIGKILL
    assert _wait_until_gone([pids["child"], pids["grandchild"]]) == []


@posix_only
def test_processes_left_behind_after_a_normal_exit_are_ended() -> None:
    recorder = Recorder()
    job = recorder.job(
        """
        import json, subprocess, sys
        orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        print(json.dumps({"orphan": orphan.pid}), flush=True)
        """
    )
    job.start()
    assert job.wait(timeout_s=20) == 0
    (orphan_line,) = [event[1] for event in recorder.of_kind("log") if "orphan" in event[1]]
    assert _wait_until_gone([json.loads(orphan_line)["orphan"]]) == []


def test_wait_times_out_and_cancel_after_finish_is_harmless() -> None:
    recorder = Recorder()
    job = recorder.job("import time; time.sleep(30)")
    job.start()
    with pytest.raises(TimeoutError):
        job.wait(timeout_s=0.2)
    job.cancel(grace_s=1.0)
    job.wait(timeout_s=20)
    job.cancel()  # no effect once finished
    assert len(recorder.of_kind("finished")) == 1
    with pytest.raises(RuntimeError, match="already started"):
        job.start()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            '{"stage": "infer", "fraction": 0.25, "message": "pass 5/20"}',
            ("infer", 0.25, "pass 5/20"),
        ),
        ('  {"stage": "infer", "fraction": 1}  ', ("infer", 1.0, "")),
        ('{"stage": "infer", "fraction": -0.5}', ("infer", 0.0, "")),
        ('{"stage": "infer", "fraction": true}', None),
        ('{"stage": "infer", "fraction": "half"}', None),
        ('{"stage": "infer"}', None),
        ('{"event": "done", "fraction": 1.0}', None),
        ('["stage", "fraction"]', None),
        ("{not json", None),
        ("plain text", None),
    ],
)
def test_parse_progress_line(line: str, expected) -> None:
    assert parse_progress_line(line) == expected


def test_error_message_from_stderr() -> None:
    assert error_message_from_stderr("") == ""
    assert error_message_from_stderr("log\nautoctv: error: bad file\n\n") == "bad file"
    assert error_message_from_stderr("Traceback ...\nValueError: boom\n") == "ValueError: boom"


def test_child_environment_and_interpreter() -> None:
    environment = child_environment(["/opt/a", "/opt/b"], base={"PYTHONPATH": "/old"})
    assert environment["PYTHONPATH"] == os.pathsep.join(["/opt/a", "/opt/b", "/old"])
    assert environment["PYTHONUNBUFFERED"] == "1"
    assert "PYTHONPATH" not in child_environment([], base={})
    # Outside the Slicer application the interpreter running the tests is used.
    assert child_python() == sys.executable
    assert autoctv_command(["predict", "ct.nrrd"], python="py") == [
        "py",
        "-m",
        "AutoCTVLib.cli.main",
        "predict",
        "ct.nrrd",
    ]


class _FakePopen:
    """Stands in for ``subprocess.Popen``: records its options, 'runs' a child that prints one
    progress line and exits with 0 (no process is started)."""

    calls: ClassVar[list[dict]] = []

    def __init__(self, command, **options):
        import io

        _FakePopen.calls.append({"command": list(command), **options})
        self.pid = 4242
        self.stdout = io.StringIO('{"stage": "read", "fraction": 1.0, "message": "ok"}\n')
        self.stderr = io.StringIO("")

    def wait(self, timeout=None):
        return 0


def test_windows_child_gets_its_own_group_and_no_console(monkeypatch) -> None:
    from AutoCTVLib.cli import child

    monkeypatch.setattr(child, "_IS_WINDOWS", True)
    monkeypatch.setattr(child.subprocess, "Popen", _FakePopen)
    _FakePopen.calls.clear()
    progress = []
    job = ChildJob(["fake-python", "-c", "pass"], on_progress=lambda *e: progress.append(e))
    job.start()
    assert job.wait(timeout_s=10) == 0
    (call,) = _FakePopen.calls
    assert call["creationflags"] == 0x00000200 | 0x08000000  # new group, no console window
    assert "start_new_session" not in call
    assert progress == [("read", 1.0, "ok")]


def test_inside_slicer_a_missing_pythonslicer_is_a_clear_error(monkeypatch, tmp_path) -> None:
    import types

    from AutoCTVLib.errors import AutoCTVError

    fake_slicer = types.SimpleNamespace(app=object())  # what the Slicer application has
    monkeypatch.setitem(sys.modules, "slicer", fake_slicer)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "Slicer"))
    with pytest.raises(AutoCTVError, match=r"PythonSlicer.*was not found"):
        child_python()
    beside = tmp_path / "PythonSlicer"
    beside.write_text("")
    assert child_python() == str(beside)  # found beside Slicer's executable
    monkeypatch.setattr(shutil, "which", lambda name: "/slicer/bin/PythonSlicer")
    assert child_python() == "/slicer/bin/PythonSlicer"
    # Every child command started inside Slicer uses it, never Slicer's own executable.
    assert autoctv_command(["predict"])[0] == "/slicer/bin/PythonSlicer"
