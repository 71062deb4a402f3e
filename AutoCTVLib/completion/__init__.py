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

Names are imported on first use: ``METHODS`` and ``annotation`` (which slices were drawn) need
no torch, so a GUI can describe a drawing before PyTorch is installed.
"""

from __future__ import annotations

from AutoCTVLib.lazy_exports import keep_exports_over_submodules, lazy_getattr
from AutoCTVLib.options import COMPLETION_METHODS

METHODS = COMPLETION_METHODS

_EXPORTS = {
    "AXIS_NAMES": "annotation",
    "Annotation": "annotation",
    "infer_annotation": "annotation",
    "resolve_annotation": "annotation",
    "select_label": "annotation",
    "CompletionResult": "complete",
    "complete": "complete",
    "FinetuneConfig": "finetune",
    "CompletionGridConfig": "grid",
    "CompletionModel": "model",
    "load_completion_model": "model",
}

__all__ = sorted([*_EXPORTS, "METHODS"])


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())


keep_exports_over_submodules(__name__, frozenset({"complete"}))
