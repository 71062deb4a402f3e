"""Sparse-slice completion: a full 3D contour from a few drawn slices (any orientation).

Typical use::

    from AutoCTVLib.completion import complete
    result = complete(ct, sparse_label, method="learned")      # or "finetune", "interpolate"
    result.mask           # uint8 Volume on the CT's grid; annotated slices exactly as drawn

Modules: ``annotation`` (input contract, annotated-slice inference), ``grid`` (model grid and
back), ``interpolate`` (ITK morphological contour interpolation baseline), ``prior``
(shape-based interpolation, the network's fourth input), ``learned``
(network forward), ``finetune`` (semi-automatic mode), ``model`` (network, card, loading),
``sampling`` (random and benchmark annotations), ``complete`` (the one call), ``train``
(training the completion network).
"""

from __future__ import annotations

from AutoCTVLib.completion.annotation import (
    AXIS_NAMES,
    Annotation,
    infer_annotation,
    resolve_annotation,
    select_label,
)
from AutoCTVLib.completion.complete import METHODS, CompletionResult, complete
from AutoCTVLib.completion.finetune import FinetuneConfig
from AutoCTVLib.completion.grid import CompletionGridConfig
from AutoCTVLib.completion.model import CompletionModel, load_completion_model

__all__ = [
    "AXIS_NAMES",
    "METHODS",
    "Annotation",
    "CompletionGridConfig",
    "CompletionModel",
    "CompletionResult",
    "FinetuneConfig",
    "complete",
    "infer_annotation",
    "load_completion_model",
    "resolve_annotation",
    "select_label",
]
