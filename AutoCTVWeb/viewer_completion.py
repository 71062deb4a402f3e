"""Sparse-slice completion in the viewer: draw a structure on a few slices, complete it in 3D.

"New structure" adds an empty segment to the case's segmentation (beside the CTV) and makes it
the segment editor's active segment; the user paints it on a few axial slices; "Complete"
runs the library's :func:`AutoCTVLib.completion.complete.complete` with
``method="interpolate"`` in the server process (it is fast: shape-based interpolation between
the drawn slices, no network) and writes the result back into that segment, so it is shown
as Slicer shows any segment.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

STRUCTURE_COLOR_RGB = (0.3, 0.75, 1.0)


def add_structure(editor: Any, number: int) -> str:
    """Add the empty segment ``Structure <number>`` and make it the one painted; its ID."""
    return editor.add_empty_segment(
        segment_name=f"Structure {number}", segment_color=list(STRUCTURE_COLOR_RGB)
    )


def complete_structure(case: Any, segment_id: str) -> tuple[int, float]:
    """Complete segment ``segment_id`` of the case's segmentation from its drawn slices.

    Returns (how many axial slices were drawn, seconds). The segment's voxels become the
    completed 3D mask (z, y, x on the CT grid).

    Raises:
        AutoCTVError: the library refuses the drawing (e.g. nothing drawn, a single slice).
    """
    from AutoCTVLib.completion.complete import complete
    from AutoCTVLib.volume import Volume
    from AutoCTVSlicerLib.segmentation_nodes import labelmap_from_segment, set_segment_labelmap

    node = case.segmentation_node
    drawn = labelmap_from_segment(node, segment_id, case.ct_node)
    started = time.monotonic()
    sparse = Volume((np.asarray(drawn) != 0).astype(np.uint8), case.ct_volume.geometry)
    result = complete(case.ct_volume, sparse, method="interpolate", axes="z")
    set_segment_labelmap(node, segment_id, np.asarray(result.mask.array), case.ct_node)
    slices = int((np.asarray(drawn).reshape(drawn.shape[0], -1) != 0).any(axis=1).sum())
    return slices, time.monotonic() - started
