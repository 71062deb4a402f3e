"""Progress reporters for long CLI commands: a bar on stderr, JSON lines on stdout, or nothing.

The library reports ``(stage, fraction of that stage, message)``. A :class:`StagedProgress`
turns that into the progress of the whole command with fixed stage weights, so the overall
fraction only ever grows. With ``--progress json`` every update is one line on stdout::

    {"stage": "network", "fraction": 0.42, "stage_fraction": 0.5, "message": "sliding window"}

``fraction`` is the whole command's progress in [0, 1]; the last line has stage ``"done"`` and
fraction 1.0. The Slicer module's child-process runner reads these lines; other output goes to
stderr. With ``--progress bar`` a tqdm bar is drawn on stderr (plain lines if tqdm is missing).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any, TextIO

PROGRESS_MODES = ("bar", "json", "none")

#: Stage weights of ``autoctv predict`` (relative; stages not listed weigh nothing).
PREDICT_STAGE_WEIGHTS = {
    "read": 0.06,
    "preprocess": 0.06,
    "network": 0.40,
    "uncertainty": 0.30,
    "resample": 0.06,
    "postprocess": 0.03,
    "summary": 0.02,
    "write": 0.07,
}


def predict_stage_weights(with_uncertainty: bool) -> dict[str, float]:
    """The predict weights, without the MC stages when no uncertainty is computed."""
    if with_uncertainty:
        return dict(PREDICT_STAGE_WEIGHTS)
    return {k: v for k, v in PREDICT_STAGE_WEIGHTS.items() if k not in ("uncertainty", "summary")}


class StagedProgress:
    """Callable ``(stage, fraction, message)`` that reports the whole command's progress.

    Args:
        mode: "bar", "json" or "none".
        stage_weights: stage → relative weight, in the order the stages run.
        out: where JSON lines go (stdout).
        err: where the bar goes (stderr).
        label: what is being worked on (a batch's "case 2/5 ct_07"): shown before the stage
            on the bar, and as ``"case"`` in every JSON line.
    """

    def __init__(
        self,
        mode: str,
        stage_weights: Mapping[str, float],
        *,
        out: TextIO | None = None,
        err: TextIO | None = None,
        label: str = "",
    ) -> None:
        if mode not in PROGRESS_MODES:
            raise ValueError(f"progress must be one of {PROGRESS_MODES}, got {mode!r}")
        self.mode = mode
        total = float(sum(stage_weights.values())) or 1.0
        self._weights = {stage: float(w) / total for stage, w in stage_weights.items()}
        self._order = list(stage_weights)
        self._out = out or sys.stdout
        self._err = err or sys.stderr
        self._overall = 0.0
        self._stage = ""
        self._bar: Any = None
        self._label = label

    @property
    def overall(self) -> float:
        """The whole command's progress so far, 0–1."""
        return self._overall

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        fraction = min(1.0, max(0.0, float(fraction)))
        if stage in self._weights:
            index = self._order.index(stage)
            done_before = sum(self._weights[s] for s in self._order[:index])
            self._overall = max(self._overall, done_before + self._weights[stage] * fraction)
        elif stage == "done":
            self._overall = 1.0
        self._emit(stage, fraction, message)

    def done(self, message: str = "finished") -> None:
        """Report completion (fraction 1.0, stage "done") and close the bar."""
        self("done", 1.0, message)
        self.close()

    def close(self) -> None:
        """Close the bar (safe to call more than once)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _emit(self, stage: str, fraction: float, message: str) -> None:
        if self.mode == "json":
            event = {
                "stage": stage,
                "fraction": round(self._overall, 4),
                "stage_fraction": round(fraction, 4),
                "message": message,
            }
            if self._label:
                event["case"] = self._label
            print(json.dumps(event), file=self._out, flush=True)
        elif self.mode == "bar":
            self._show(stage, message)

    def _show(self, stage: str, message: str) -> None:
        if self._bar is None:
            try:
                from tqdm import tqdm
            except ImportError:
                if stage != self._stage:
                    print(f"{stage}: {message}", file=self._err, flush=True)
                    self._stage = stage
                return
            self._bar = tqdm(
                total=100,
                unit="%",
                file=self._err,
                dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} {postfix}",
            )
        self._stage = stage
        description = f"{self._label}: {stage}" if self._label else stage
        self._bar.set_description_str(description, refresh=False)
        self._bar.set_postfix_str(message[:60], refresh=False)
        self._bar.n = round(100 * self._overall, 1)
        self._bar.refresh()
