"""The Slicer module's child-process code, imported from its ``AutoCTVSlicerLib`` package.

``AutoCTVSlicerLib`` lives in the Slicer module's folder (``AutoCTV/``). When it is not
importable already (an installed package, or Slicer's own path), that folder, beside this
package in the source tree, is put on ``sys.path``. Only ``child_process`` is imported here: it
needs neither Slicer nor Qt.
"""

from __future__ import annotations

import sys
from pathlib import Path

SLICER_MODULE_DIR = Path(__file__).resolve().parents[1] / "AutoCTV"

try:
    import AutoCTVSlicerLib  # noqa: F401
except ImportError:
    if not (SLICER_MODULE_DIR / "AutoCTVSlicerLib").is_dir():
        raise
    sys.path.insert(0, str(SLICER_MODULE_DIR))

from AutoCTVSlicerLib.child_process import (  # noqa: E402
    ChildJob,
    autoctv_command,
    child_environment,
)

__all__ = ["ChildJob", "autoctv_command", "child_environment"]
