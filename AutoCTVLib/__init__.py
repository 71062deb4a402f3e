"""AutoCTV core library: CTV auto-contouring, uncertainty and completion for radiotherapy CT.

The library never imports Slicer, Qt, CTK or VTK. Arrays are indexed (z, y, x); physical
coordinates are LPS millimetres (DICOM patient coordinates), as in SimpleITK.
"""

from __future__ import annotations

__version__ = "0.1.0"
