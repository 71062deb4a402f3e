"""The main job: contour the CTV on a CT, with optional Monte-Carlo dropout uncertainty.

* :mod:`.predictor` — ``Predictor(model, card, device=..., threads=...).predict(ct)`` →
  :class:`Prediction` (volume in, volumes out, all on the input's exact grid).
* :mod:`.mc` — cheap MC-dropout sampling (and the naive reference).
* :mod:`.network_stage` — one pass or sliding window, GPU → CPU fallback on out-of-memory.
* :mod:`.memory` — how much fits in one network pass.
* :mod:`.speed` — CPU speed settings (and the process environment the CLI prepares).
* :mod:`.outputs` — every output file in one transaction; :mod:`.report` — ``report.json``.

Names are imported lazily, so ``import AutoCTVLib.predict.speed`` does not load torch (the
command line must prepare the environment before torch starts).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Predictor": "predictor",
    "Prediction": "predictor",
    "DEFAULT_POSTPROCESS": "predictor",
    "MCSettings": "mc",
    "SpeedSettings": "speed",
    "OutputRequest": "outputs",
    "write_outputs": "outputs",
    "parse_formats": "outputs",
    "build_report": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'AutoCTVLib.predict' has no attribute {name!r}")
    return getattr(importlib.import_module(f"AutoCTVLib.predict.{module}"), name)
