"""Budget accounting for the peer benchmark: wall clock, CPU time and peak memory of a process.

Every training and every inference case of ``benchmarks/peers.py`` runs as its own child
process. :func:`measured_run` waits for it with ``os.wait4``, which gives the child's resource
use as the kernel counts it: user and system CPU seconds of the child *and of every descendant
it waited for* (data-loading workers included once they have exited), and the peak resident set
size of the largest of them (not their sum). No tracer, no sampling: nothing slows the child.

:class:`TimeBudget` is the clock each training loop checks: wall-clock seconds from the first
training iteration (data loading, caching and preprocessing come before it and are reported
separately). A loop checks it after every iteration, so the overshoot is at most one iteration.
"""

from __future__ import annotations

import os
import resource
import subprocess
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
    the largest single process's (MiB = 2**20 bytes).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            cwd=None if cwd is None else str(cwd),
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return {
        "returncode": process.returncode,
        "wall_s": wall,
        "cpu_user_s": usage.ru_utime,
        "cpu_system_s": usage.ru_stime,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        # Linux reports ru_maxrss in KiB.
        "peak_rss_mib": usage.ru_maxrss / 1024.0,
    }


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
