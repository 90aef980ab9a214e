"""The table of per-segment volumes (and lesions) of the segmentation being edited.

The segmentation node is exported to a label map on the reference volume's grid (segment n
gets label value n + 1, in the node's order) and measured with the host layer's
``segmentStatistics``, so the numbers match the desktop module's table and follow every edit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import slicer
import vtk

from unetseg.engine.manifest import LabelSpec
from unetseg.host.report import formatSize, segmentStatistics
from unetseg.host.volumes import volumeGeometry


def segment_ids(segmentation_node: Any) -> list[str]:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegmentID(n) for n in range(segmentation.GetNumberOfSegments())]


def segment_specs(
    segmentation_node: Any,
    ids: list[str],
    terminology: Mapping[str, Any] | None = None,
) -> list[LabelSpec]:
    """One label per segment ``ids[n]``: value n + 1 (as ``labels_from_segmentation``), the
    segment's current name and colour, and ``terminology[segment id]`` (None when absent)."""
    segmentation = segmentation_node.GetSegmentation()
    specs = []
    for value, segment_id in enumerate(ids, start=1):
        segment = segmentation.GetSegment(segment_id)
        r, g, b = (round(255 * c) for c in segment.GetColor())
        codes = terminology.get(segment_id) if terminology else None
        specs.append(LabelSpec(value, segment.GetName(), (r, g, b), codes))
    return specs


def labels_from_segmentation(
    segmentation_node: Any, reference_volume: Any, ids: list[str] | None = None
) -> np.ndarray:
    """Label map `(K, J, I)` on ``reference_volume``'s grid; segment ``ids[n]`` -> n + 1.

    Overlapping segments: a later segment wins. Raises ``RuntimeError`` when Slicer cannot
    export (no reference geometry).
    """
    scene = segmentation_node.GetScene()
    ids = segment_ids(segmentation_node) if ids is None else ids
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "UNetSeg web export")
    try:
        names = vtk.vtkStringArray()
        for segment_id in ids:
            names.InsertNextValue(segment_id)
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation_node, names, labelmap, reference_volume
        )
        if not ok:
            raise RuntimeError(f"Cannot export segmentation '{segmentation_node.GetName()}'")
        array = slicer.util.arrayFromVolume(labelmap).copy()
    finally:
        scene.RemoveNode(labelmap)
    return array.astype(np.uint16 if len(ids) > 255 else np.uint8, copy=False)


def segment_table(
    segmentation_node: Any, reference_volume: Any, lesions: bool = False
) -> dict[str, Any]:
    """Rows for the panel: ``{"segments": [...], "lesions": [...], "lesion_count": n}``.

    Each segment row has ``id``, ``name``, ``color`` (hex), ``voxels`` and ``size`` (mL, or
    cm2 for a single-slice image); lesion rows (``lesions=True``: every segment is a lesion
    label) have ``id``, ``voxels``, ``volume_ml`` and ``diameter_mm``.
    """
    ids = segment_ids(segmentation_node)
    specs = segment_specs(segmentation_node, ids)
    labels = labels_from_segmentation(segmentation_node, reference_volume, ids)
    geometry = volumeGeometry(reference_volume)
    lesion_values = [spec.value for spec in specs] if lesions and specs else None
    statistics = segmentStatistics(labels, geometry, specs, lesion_values)
    rows = [
        {
            "id": ids[row["value"] - 1],
            "name": row["name"],
            "color": "#{:02x}{:02x}{:02x}".format(*specs[row["value"] - 1].color),
            "voxels": row["voxel_count"],
            "size": formatSize(row),
        }
        for row in statistics["segments"]
    ]
    lesion_rows = [
        {
            "id": lesion["id"],
            "voxels": lesion["voxel_count"],
            "volume_ml": round(lesion["volume_ml"], 3),
            "diameter_mm": round(lesion["equivalent_diameter_mm"], 1),
        }
        for lesion in statistics.get("lesions", [])
    ]
    return {
        "segments": rows,
        "lesions": lesion_rows,
        "lesion_count": statistics.get("lesion_count", 0),
    }
