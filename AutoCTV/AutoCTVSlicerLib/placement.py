"""Where result nodes go: beside their CT in the subject hierarchy, under its transform.

In the Slicer application a subject hierarchy item is created for every data node as soon as it
is added to the scene; on a bare MRML scene (``slicer-core``) nobody does that, so the item is
created here when it is missing. Either way the result ends up as a sibling of the reference
volume: inside its study when the CT came from DICOM (patient → study → series), at the top
level otherwise.
"""

from __future__ import annotations

import slicer


def subject_hierarchy_of(scene):
    """The scene's ``vtkMRMLSubjectHierarchyNode`` (created if the scene has none)."""
    return slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)


def place_beside(node, reference_node) -> int:
    """Put ``node``'s subject hierarchy item under the parent of ``reference_node``'s item.

    Returns:
        The subject hierarchy item ID of ``node``.
    """
    hierarchy = subject_hierarchy_of(node.GetScene())
    invalid = hierarchy.GetInvalidItemID()
    reference_item = hierarchy.GetItemByDataNode(reference_node)
    if reference_item != invalid:
        parent_item = hierarchy.GetItemParent(reference_item)
    else:
        parent_item = hierarchy.GetSceneItemID()
    item = hierarchy.GetItemByDataNode(node)
    if item == invalid:
        item = hierarchy.CreateItem(parent_item, node)
    elif hierarchy.GetItemParent(item) != parent_item:
        hierarchy.SetItemParent(item, parent_item)
    return item


def copy_parent_transform(node, reference_node) -> None:
    """Observe the same parent transform as ``reference_node`` (results share its grid)."""
    transform_node = reference_node.GetParentTransformNode()
    node.SetAndObserveTransformNodeID(transform_node.GetID() if transform_node else None)


def remove_with_display_nodes(node) -> None:
    """Remove a node and the display nodes it references (cleanup after a failed creation)."""
    scene = node.GetScene()
    if scene is None:
        return
    display_nodes = [node.GetNthDisplayNode(n) for n in range(node.GetNumberOfDisplayNodes())]
    for display_node in display_nodes:
        if display_node is not None:
            scene.RemoveNode(display_node)
    scene.RemoveNode(node)
