"""Render AutoCTV's real output on the demo phantom through Slicer's slice pipeline, headless.

The picture in the README and the extension's screenshot (``Resources/Screenshots/``) come from
here. The Slicer module's own logic runs on a ``slicer-core`` MRML scene: the phantom of the
panel's "Load phantom" button (seed 2026) is contoured by the bundled model in a child
``autoctv predict`` process with 20 Monte-Carlo dropout samples; the CT, the heat map (the
module's display settings: transparent below 0.1 bits, opacity 0.5) and the CTV outline (as a
label layer) are then resliced and blended by ``vtkMRMLSliceLogic``, the pipeline behind Slicer's
slice views, for an axial and a coronal view. matplotlib only lays the two views side by side
and draws the colour bar. It is not a screenshot of the Slicer application (no panel, no GUI)::

    .venv/bin/python scripts/render_screenshot.py Resources/Screenshots/AutoCTV-output.png
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "AutoCTV"), str(REPO / "Testing")]

SEED = 2026
MC_SAMPLES = 20
VIEW_PIXELS = (420, 420)
#: Width and height of each view (mm): the pelvis, not the whole phantom.
FIELD_OF_VIEW_MM = 250.0


def render_view(scene, name: str, orientation: str, ct_node, heat_node, label_node, ras):
    """The blended RGB image (rows, columns, 3) of one slice view through ``ras`` (mm)."""
    import slicer
    from vtk.util.numpy_support import vtk_to_numpy

    logic = slicer.vtkMRMLSliceLogic()
    logic.SetMRMLScene(scene)
    logic.AddSliceNode(name)
    slice_node, composite = logic.GetSliceNode(), logic.GetSliceCompositeNode()
    slice_node.SetOrientation(orientation)
    slice_node.SetDimensions(*VIEW_PIXELS, 1)
    slice_node.SetUseLabelOutline(True)
    composite.SetBackgroundVolumeID(ct_node.GetID())
    composite.SetForegroundVolumeID(heat_node.GetID())
    composite.SetForegroundOpacity(0.5)
    composite.SetLabelVolumeID(label_node.GetID())
    composite.SetLabelOpacity(1.0)
    logic.FitSliceToAll()
    slice_node.SetFieldOfView(FIELD_OF_VIEW_MM, FIELD_OF_VIEW_MM, slice_node.GetFieldOfView()[2])
    slice_node.JumpSliceByCentering(*ras)
    producer = logic.GetImageDataConnection().GetProducer()
    producer.Update()
    image = producer.GetOutputDataObject(0)
    columns, rows, _ = image.GetDimensions()
    rgba = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(rows, columns, -1)
    return rgba[::-1, :, :3]  # VTK's first row is the bottom one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="PNG file to write")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import slicer
    from matplotlib.colors import LinearSegmentedColormap
    from mrml_support import new_scene

    from AutoCTVLib.metrics import dice
    from AutoCTVSlicerLib import heat_map
    from AutoCTVSlicerLib.logic import AutoContourSettings, AutoCTVCoreLogic
    from AutoCTVSlicerLib.segmentation_nodes import CTV_COLOR_RGB, labelmap_from_segment
    from AutoCTVSlicerLib.volume_nodes import add_volume_node, volume_from_node

    scene = new_scene()
    colors = slicer.vtkMRMLColorLogic()  # Slicer's default colour tables (kept while used)
    colors.SetMRMLScene(scene)
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    logic = AutoCTVCoreLogic()
    ct_node, reference = logic.load_phantom(scene, seed=SEED)
    display = ct_node.GetDisplayNode()
    display.SetAndObserveColorNodeID("vtkMRMLColorTableNodeGrey")
    display.AutoWindowLevelOff()
    display.SetWindowLevel(400.0, 40.0)  # soft-tissue window (HU)
    started = time.perf_counter()
    job = logic.start_auto_contour(ct_node, AutoContourSettings(mc_samples=MC_SAMPLES))
    result = job.wait(timeout_s=1800)
    if result is None:
        raise SystemExit(f"render_screenshot: error: {job.error_message}")
    seconds = time.perf_counter() - started
    predicted = labelmap_from_segment(result.segmentation_node, result.segment_id, ct_node)
    ctv = volume_from_node(ct_node).with_array(predicted)
    label_node = add_volume_node(ctv, "CTV label", scene, "vtkMRMLLabelMapVolumeNode")
    outline = slicer.vtkMRMLColorTableNode()  # label 1 in the module's CTV colour
    outline.SetTypeToUser()
    outline.SetNumberOfColors(2)
    outline.SetColor(0, "background", 0.0, 0.0, 0.0, 0.0)
    outline.SetColor(1, "CTV", *CTV_COLOR_RGB, 1.0)
    scene.AddNode(outline)
    label_node.GetDisplayNode().SetAndObserveColorNodeID(outline.GetID())
    entries = heat_map.review_entries(result.uncertainty_node)
    k = entries[0].k if entries else int(np.argmax(predicted.sum(axis=(1, 2))))
    ras = heat_map.slice_centre_ras(ct_node, k)
    views = [
        render_view(scene, name, orientation, ct_node, result.uncertainty_node, label_node, ras)
        for name, orientation in (("Red", "Axial"), ("Green", "Coronal"))
    ]

    ramp = [(position, (r, g, b)) for position, r, g, b in heat_map.HEAT_POINTS]
    cmap = LinearSegmentedColormap.from_list("autoctv_heat", ramp)
    figure, axes = plt.subplots(1, 3, figsize=(8.6, 4.2), width_ratios=(1, 1, 0.06), dpi=90)
    for index, title in enumerate((f"axial, slice {k}", "coronal")):
        axes[index].imshow(views[index])
        axes[index].set_title(title, fontsize=9)
        axes[index].axis("off")
    bar = figure.colorbar(plt.cm.ScalarMappable(cmap=cmap), cax=axes[2])
    bar.set_label("uncertainty (bits); clear below 0.1", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    figure.suptitle(
        f"AutoCTV on the synthetic phantom (seed {SEED}): CTV outline (Dice "
        f"{dice(predicted, reference):.2f}) and {MC_SAMPLES}-sample MC-dropout heat map",
        fontsize=9,
    )
    figure.text(
        0.5,
        0.01,
        "Rendered headless by Slicer's MRML slice pipeline (slicer-core); not a screenshot of "
        "the Slicer application. Synthetic data, not for clinical use.",
        ha="center",
        fontsize=7,
    )
    figure.tight_layout(rect=(0, 0.03, 1, 0.95))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.output)
    print(f"wrote {args.output} (contouring {seconds:.0f} s, review slice {k})")


if __name__ == "__main__":
    main()
