"""MRML glue of the AutoCTV Slicer module: nodes in, library volumes out, result nodes back.

The only place where MRML nodes meet the core library. It imports ``slicer`` (MRML, VTK) but
never Qt or ``slicer.ScriptedLoadableModule``, so it runs in the Slicer application, in a
browser front end on the same MRML scene, and on a bare ``slicer-core`` scene (the tests).
Child processes and their file contracts are the library's (:mod:`AutoCTVLib.cli.jobs`).

* ``volume_nodes``: the one RAS ⇄ LPS conversion between volume nodes and library volumes.
* ``segmentation_nodes``: labelmaps ⇄ segments; reference image; Fill between slices (vtkITK).
* ``heat_map``: the uncertainty heat map node, its display in the slice views, the review list.
* ``placement``: result nodes go beside their CT in the subject hierarchy.
* ``provenance``: model, settings and input identity as node attributes.
* ``logic``: ``AutoCTVCoreLogic``, everything the panel does, without the panel.
* ``dicom_export``: RTSTRUCT and DICOM SEG export of segmentation nodes.
* ``dependencies``: the library's dependency plan (:mod:`AutoCTVLib.dependencies`) carried out
  with Slicer's dialog, pip and PyTorch extension, only with the user's consent.
* ``self_test``: the self-test workflow (Slicer's test harness and the slicer-core tests).
"""
