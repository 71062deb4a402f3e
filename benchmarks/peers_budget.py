"""Budget accounting for the peer benchmark: wall clock, CPU time and peak memory of a process.

Every training and every inference case of ``benchmarks/peers.py`` runs as its own child
process. :func:`measured_run` waits for it with ``os.wait4``, which gives the child's resource
use as the kernel counts it: user and system CPU seconds of the child *and of every descendant
it waited for* (data-loading workers included once they have exited), and the peak resident set
size of the largest of them (not their sum). No tracer, no sampling: nothing slows the child.

Linux keeps the forking process's resident-set high-water mark in a child's ``ru_maxrss`` when
the child calls ``exec``: a method started straight from the benchmark (which holds the
reference labelmaps, about 2 GiB) would report at least the benchmark's own size. So the child
is started by a small launcher process (this file run as a script, about 15 MiB), which waits
for it and hands back its ``wait4`` record: the floor is the launcher's size, not the
benchmark's.

:class:`TimeBudget` is the clock each training loop checks: wall-clock seconds from the first
training iteration (data loading, caching and preprocessing come before it and are reported
separately). A loop checks it after every iteration, so the overshoot is at most one iteration.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def measured_run(
    command: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> dict[str, Any]:
    """Run ``command`` to its end (output into ``log_path``); its wall, CPU and memory use.

    Returns ``{"returncode", "wall_s", "cpu_user_s", "cpu_system_s", "cpu_s",
    "peak_rss_mib"}``; CPU seconds include the descendants the child waited for, the peak RSS is
    the largest single process's (MiB = 2**20 bytes), measured through the launcher (see the
    module docstring).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder, open(log_path, "wb") as log:
        usage_path = Path(folder) / "usage.json"
        started = time.perf_counter()
        launcher = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), str(usage_path), *command],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            cwd=None if cwd is None else str(cwd),
            check=False,
        )
        wall = time.perf_counter() - started
        if not usage_path.exists():
            raise RuntimeError(f"the launcher failed ({launcher.returncode}); see {log_path}")
        usage = json.loads(usage_path.read_text())
    return {**usage, "wall_s": wall}


def _launch(usage_path: str, command: list[str]) -> int:
    """The launcher: run ``command``, wait for it with ``os.wait4``, write its usage (JSON)."""
    try:
        process = subprocess.Popen(command)
    except OSError as error:
        print(f"cannot start {command[0]}: {error}", file=sys.stderr)
        returncode, user, system, maxrss_kib = 127, 0.0, 0.0, 0
    else:
        _, status, usage = os.wait4(process.pid, 0)
        returncode = os.waitstatus_to_exitcode(status)
        user, system, maxrss_kib = usage.ru_utime, usage.ru_stime, usage.ru_maxrss
    record = {
        "returncode": returncode,
        "cpu_user_s": user,
        "cpu_system_s": system,
        "cpu_s": user + system,
        # Linux reports ru_maxrss in KiB.
        "peak_rss_mib": maxrss_kib / 1024.0,
    }
    Path(usage_path).write_text(json.dumps(record) + "\n")
    return 0


def process_cpu_seconds() -> float:
    """User + system CPU seconds of this process and of the children it has waited for."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class TimeBudget:
    """Wall-clock training budget, started at the first iteration, checked after each one."""

    def __init__(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError(f"a budget must be positive, got {seconds!r} s")
        self.seconds = float(seconds)
        self._started: float | None = None
        self._cpu_started = 0.0
        self.iterations = 0

    def start(self) -> None:
        """Start the clock (call right before the first training iteration)."""
        self._started = time.perf_counter()
        self._cpu_started = process_cpu_seconds()

    def tick(self) -> bool:
        """Count one finished iteration; True once the budget is spent (stop now)."""
        self.iterations += 1
        return self.elapsed() >= self.seconds

    def elapsed(self) -> float:
        """Wall seconds since :meth:`start` (0 before it)."""
        return 0.0 if self._started is None else time.perf_counter() - self._started

    def record(self) -> dict[str, Any]:
        """``{"budget_s", "loop_wall_s", "loop_cpu_s_main", "iterations"}`` so far.

        ``loop_cpu_s_main`` is this process's CPU time in the loop (workers still running are not
        in it; the whole process tree's CPU time comes from :func:`measured_run`).
        """
        return {
            "budget_s": self.seconds,
            "loop_wall_s": self.elapsed(),
            "loop_cpu_s_main": process_cpu_seconds() - self._cpu_started,
            "iterations": self.iterations,
        }


if __name__ == "__main__":
    sys.exit(_launch(sys.argv[1], sys.argv[2:]))
