"""Where the web app takes the Slicer module's code from.

The child process that contours a case (``autoctv predict --progress json`` in its own process
group, cancellable) is the one the Slicer module runs: :mod:`AutoCTVLib.cli.child`, which needs
neither Slicer nor Qt. The viewer's MRML glue (volume and segmentation nodes, heat map, review
jumps) is the module's ``AutoCTVSlicerLib``, which lives in the Slicer module's folder
(``AutoCTV/``): when it is not importable already (an installed package, or Slicer's own path),
that folder, beside this package in the source tree, is put on ``sys.path``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from AutoCTVLib.cli.child import ChildJob, autoctv_command, child_environment

SLICER_MODULE_DIR = Path(__file__).resolve().parents[1] / "AutoCTV"

try:
    import AutoCTVSlicerLib  # noqa: F401
except ImportError:
    if not (SLICER_MODULE_DIR / "AutoCTVSlicerLib").is_dir():
        raise
    sys.path.insert(0, str(SLICER_MODULE_DIR))

__all__ = ["SLICER_MODULE_DIR", "ChildJob", "autoctv_command", "child_environment"]
