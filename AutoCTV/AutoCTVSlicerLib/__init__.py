"""MRML glue of the AutoCTV Slicer module: nodes in, library volumes out, result nodes back.

This package sits beside ``AutoCTV.py`` and is the only place where MRML nodes meet the core
library. It imports ``slicer`` (MRML, VTK) but never Qt or ``slicer.ScriptedLoadableModule``,
so it runs in the Slicer application, in ``PythonSlicer`` and on a bare MRML scene from the
``slicer-core`` package (which is how the tests exercise it).

Modules:

* ``volume_nodes``: the one RAS ⇄ LPS conversion between volume nodes and
  :class:`AutoCTVLib.volume.Volume`.
* ``segmentation_nodes``: labelmaps ⇄ segmentation nodes (named, coloured, coded segments).
* ``map_nodes``: float maps (uncertainty heat maps) as scalar volume nodes on the CT grid.
* ``placement``: puts result nodes in the study of their CT, under its parent transform.
* ``provenance``: model, settings and input identity stored as node attributes.
* ``child_process``: runs the ``autoctv`` command as a cancellable child process tree
  (imports neither ``slicer`` nor Qt).
* ``jobs``: a child ``autoctv predict`` / ``complete`` run in a temporary folder, outputs read
  back onto the CT grid.
* ``logic``: ``AutoCTVCoreLogic``, everything the panel does, without the panel.
* ``views``: heat map over the CT in the slice views; jumping to a slice.
* ``dicom_export``: RTSTRUCT and DICOM SEG export of segmentation nodes through the library.
* ``dependencies``: which Python packages are missing, and installing them with consent.

Nothing is imported here, so ``import AutoCTVSlicerLib.child_process`` works without MRML.
"""

from __future__ import annotations
