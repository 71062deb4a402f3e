"""The viewer's slice change moves the axial views only (the other views keep their plane)."""

from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="slicer-core (the web extra) is not installed")

from conftest import make_geometry  # noqa: E402
from mrml_support import new_scene  # noqa: E402

from AutoCTVLib.volume import Volume  # noqa: E402
from AutoCTVWeb.viewer_scene import move_axial_views  # noqa: E402

SHAPE_ZYX = (12, 24, 28)


def test_slice_change_moves_only_the_axial_views():
    from AutoCTVSlicerLib.heat_map import slice_centre_ras
    from AutoCTVSlicerLib.volume_nodes import add_volume_node

    scene = new_scene()
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)  # as the Slicer app does
    geometry = make_geometry("oblique", shape_zyx=SHAPE_ZYX, spacing_xyz_mm=(1.5, 1.5, 3.0))
    ct_node = add_volume_node(Volume(np.zeros(SHAPE_ZYX, np.float32), geometry), "CT", scene)
    views = {}
    for name, orientation in (("Red", "Axial"), ("Green", "Coronal"), ("Yellow", "Sagittal")):
        node = scene.AddNewNodeByClass("vtkMRMLSliceNode")
        node.SetLayoutName(name)
        node.SetOrientation(orientation)
        views[name] = node
    before = {n: slicer.util.arrayFromVTKMatrix(v.GetSliceToRAS()) for n, v in views.items()}

    assert move_axial_views(ct_node, 7) == 1
    after = {n: slicer.util.arrayFromVTKMatrix(v.GetSliceToRAS()) for n, v in views.items()}
    assert np.array_equal(after["Green"], before["Green"])
    assert np.array_equal(after["Yellow"], before["Yellow"])
    # the axial plane now passes through the centre of slice 7, without panning in-plane
    red = after["Red"]
    centre = slice_centre_ras(ct_node, 7)
    normal = red[:3, 2] / np.linalg.norm(red[:3, 2])
    assert abs(float(np.dot(centre - red[:3, 3], normal))) < 1e-3
    assert np.allclose(red[:3, :3], before["Red"][:3, :3])


def test_axial_slice_change_renders_only_the_axial_view():
    """With the slice-plane models dropped, coronal and sagittal views do not render again."""
    pytest.importorskip("trame_slicer", reason="trame-slicer (the web extra) is not installed")
    from trame_slicer.core import SlicerApp
    from trame_slicer.views import DirectViewFactory, ViewLayoutDefinition

    from AutoCTVSlicerLib.volume_nodes import add_volume_node
    from AutoCTVWeb.viewer_scene import drop_slice_models

    app = SlicerApp()
    slicer.mrmlScene = app.scene
    app.view_manager.register_factory(DirectViewFactory(do_render_offscreen=True))
    definitions = (
        ViewLayoutDefinition.axial_view(),
        ViewLayoutDefinition.coronal_view(),
        ViewLayoutDefinition.sagittal_view(),
    )
    views = {d.singleton_tag: app.view_manager.create_view(d) for d in definitions}
    geometry = make_geometry("oblique", shape_zyx=SHAPE_ZYX, spacing_xyz_mm=(1.5, 1.5, 3.0))
    ramp = np.arange(np.prod(SHAPE_ZYX), dtype=np.float32).reshape(SHAPE_ZYX)
    ct_node = add_volume_node(Volume(ramp, geometry), "CT", app.scene)
    app.display_manager.show_volume(ct_node)
    renders = dict.fromkeys(views, 0)
    for name, view in views.items():
        original = view.render

        def counted(name: str = name, original: object = original) -> None:
            renders[name] += 1
            original()  # type: ignore[operator]

        view.render = counted

    move_axial_views(ct_node, 3)
    assert renders["Red"] > 0
    assert renders["Green"] > 0 and renders["Yellow"] > 0  # the slice-plane models, as made

    assert drop_slice_models(app.app_logic) == 3
    renders.update(dict.fromkeys(views, 0))
    move_axial_views(ct_node, 4)
    assert renders["Red"] > 0
    assert renders == {"Red": renders["Red"], "Green": 0, "Yellow": 0}
    assert drop_slice_models(app.app_logic) == 0
