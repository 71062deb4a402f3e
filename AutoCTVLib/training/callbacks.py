"""Trainer callbacks: progress reporting and the CSV/JSON training logs.

The trainer calls callbacks on rank 0 only (they write files and talk to the user). Decisions
that every rank must share, such as early stopping, live in the trainer itself.

Records passed to callbacks:

* iteration: ``{"iteration", "loss", "lr", "seconds"}`` (loss averaged over ranks); with a loss
  weighting (``TrainConfig.loss_weighting`` "qam"/"qam_ocm") also ``"sample_weights"`` (the
  weights Θ of rank 0's patches, summing to 1) and ``"case_ids"`` (their cases);
* validation: ``{"iteration", "cases", "dice_mean", "hd95_mean_mm", "hd95_median_mm",
  "hd95_infinite_cases", "is_best", "seconds", "per_case": [{"case_id", "dice", "hd95_mm",
  "volume_pred_ml", "volume_ref_ml"}, ...]}`` (HD95 in mm on the network grid; ``inf`` for a
  case with an empty prediction or reference).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from AutoCTVLib.io.atomic import atomic_path

if TYPE_CHECKING:
    from AutoCTVLib.training.trainer import Trainer

TRAINING_LOG_CSV = "training_log.csv"
VALIDATION_LOG_CSV = "validation_log.csv"
HISTORY_JSON = "history.json"


class Callback:
    """Base class: override the hooks you need (all do nothing by default)."""

    def on_train_start(self, trainer: Trainer) -> None:
        """Before the first iteration (after a resume, the restored state is in place)."""

    def on_iteration_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """After every optimiser step."""

    def on_validation_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """After each validation and the checkpoints it triggers."""

    def on_train_end(self, trainer: Trainer) -> None:
        """After the last iteration (also after an early stop)."""


class ProgressCallback(Callback):
    """Forward events to a function: ``report({"event": "start"|"iteration"|"validation"|"end",
    ...record})``. The command line turns these into a progress bar or JSON lines."""

    def __init__(self, report: Callable[[dict[str, Any]], None]) -> None:
        self._report = report

    def on_train_start(self, trainer: Trainer) -> None:
        self._report(
            {
                "event": "start",
                "iteration": trainer.state.iteration,
                "iterations": trainer.config.iterations,
            }
        )

    def on_iteration_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self._report({"event": "iteration", "iterations": trainer.config.iterations, **record})

    def on_validation_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        summary = {key: value for key, value in record.items() if key != "per_case"}
        self._report({"event": "validation", **summary})

    def on_train_end(self, trainer: Trainer) -> None:
        self._report(
            {
                "event": "end",
                "iteration": trainer.state.iteration,
                "best_dice": trainer.state.best_dice,
                "best_iteration": trainer.state.best_iteration,
                "stopped_early": trainer.state.stopped_early,
            }
        )


def json_safe(value: Any) -> Any:
    """Replace non-finite floats by ``None`` (strict JSON has no inf/NaN), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def _csv_text(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: row.get(key, "") for key in columns})
    return buffer.getvalue()


class LogWriter(Callback):
    """Keeps ``training_log.csv``, ``validation_log.csv`` and ``history.json`` in ``log_dir``.

    The files are rewritten (atomically) from the trainer's history after every validation and
    at the end, so after a resume they hold exactly the resumed run's history.
    """

    TRAIN_COLUMNS = ("iteration", "loss", "lr", "seconds")
    VALIDATION_COLUMNS = (
        "iteration",
        "cases",
        "dice_mean",
        "hd95_mean_mm",
        "hd95_median_mm",
        "hd95_infinite_cases",
        "is_best",
        "seconds",
    )

    def __init__(self, log_dir: str | Path) -> None:
        self.log_dir = Path(log_dir)

    def write(self, trainer: Trainer) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        state = trainer.state
        outputs = {
            TRAINING_LOG_CSV: _csv_text(state.train_history, self.TRAIN_COLUMNS),
            VALIDATION_LOG_CSV: _csv_text(state.validation_history, self.VALIDATION_COLUMNS),
            HISTORY_JSON: json.dumps(
                json_safe(
                    {
                        "config": trainer.config.to_dict(),
                        "iteration": state.iteration,
                        "best_dice": state.best_dice,
                        "best_iteration": state.best_iteration,
                        "train": state.train_history,
                        "validation": state.validation_history,
                    }
                ),
                indent=1,
                allow_nan=False,
            ),
        }
        for name, text in outputs.items():
            with atomic_path(self.log_dir / name) as tmp:
                tmp.write_text(text, encoding="utf-8")

    def on_validation_end(self, trainer: Trainer, record: dict[str, Any]) -> None:
        self.write(trainer)

    def on_train_end(self, trainer: Trainer) -> None:
        self.write(trainer)
