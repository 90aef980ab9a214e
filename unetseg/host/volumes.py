"""Volume nodes to numpy arrays plus engine geometry, and to matching candidates.

Works in the Slicer app and on ``slicer-core``: only the node passed in and ``slicer.util``
array helpers are used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import slicer
import vtk

from unetseg.engine.geometry import Geometry
from unetseg.engine.matching import Candidate

# ITU-R BT.601 luma weights (as Pillow's ``convert("L")``); grey RGB (R = G = B) is unchanged.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])
#: Volume node attribute holding the DICOM SeriesDescription (set by UNetSeg's DICOM loading).
SERIES_DESCRIPTION_ATTRIBUTE = "DICOM.SeriesDescription"


def volumeGeometry(volumeNode) -> Geometry:
    """Geometry of ``volumeNode`` in world RAS, with a linear parent transform hardened in.

    The volume's own IJKToRAS is multiplied by its parent transform-to-world matrix, so the
    geometry says where the voxels are *displayed*. Non-linear parent transforms cannot be
    expressed as a matrix: harden them in Slicer first (raises ``ValueError``).
    Shape is ``(K, J, I)``; a single-slice (2D) volume has ``K = 1``.
    """
    imageData = volumeNode.GetImageData()
    if imageData is None:
        raise ValueError(f"Volume '{volumeNode.GetName()}' has no image data")
    ijkToRas = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(ijkToRas)
    matrix = slicer.util.arrayFromVTKMatrix(ijkToRas)
    transformNode = volumeNode.GetParentTransformNode()
    if transformNode is not None:
        if not transformNode.IsTransformToWorldLinear():
            raise ValueError(
                f"Volume '{volumeNode.GetName()}' is under the non-linear transform "
                f"'{transformNode.GetName()}': harden the transform (Data module, right-click, "
                "'Harden transform') before segmenting"
            )
        parentToWorld = vtk.vtkMatrix4x4()
        transformNode.GetMatrixTransformToWorld(parentToWorld)
        matrix = slicer.util.arrayFromVTKMatrix(parentToWorld) @ matrix
    i, j, k = imageData.GetDimensions()
    return Geometry(matrix, (k, j, i))


def volumeToArray(volumeNode, copy: bool = True) -> tuple[np.ndarray, Geometry]:
    """Voxels of a scalar or RGB(A) volume node as a ``(K, J, I)`` array, and its geometry.

    Args:
        volumeNode: ``vtkMRMLScalarVolumeNode`` (or ``vtkMRMLVectorVolumeNode`` with 3 or 4
            components, e.g. an RGB X-ray, which becomes float32 BT.601 luminance; alpha is
            ignored). Other multi-component volumes raise ``ValueError``.
        copy: return a copy (default). ``False`` returns a view of the node's memory for
            scalar volumes: never write into it, and do not keep it after the node changes.

    Returns:
        ``(array, geometry)``: the array in the node's voxel type, shape ``(K, J, I)``
        (``K = 1`` for single-slice 2D images, not squeezed), and ``volumeGeometry(volumeNode)``
        (parent linear transform hardened in).
    """
    geometry = volumeGeometry(volumeNode)
    array = slicer.util.arrayFromVolume(volumeNode)
    if array.ndim == 4:
        components = array.shape[-1]
        if components == 1:
            array = array[..., 0]
        elif components in (3, 4):
            luminance = array[..., :3].astype(np.float32) @ LUMA_WEIGHTS.astype(np.float32)
            return luminance, geometry
        else:
            raise ValueError(
                f"Volume '{volumeNode.GetName()}' has {components} components per voxel; only "
                "scalar and RGB(A) volumes can be segmented"
            )
    if array.ndim != 3:
        raise ValueError(
            f"Volume '{volumeNode.GetName()}' gives an array of shape {array.shape}; "
            "expected (K, J, I)"
        )
    return (array.copy() if copy else array), geometry


def addVolumeFromArray(scene, array: np.ndarray, geometry: Geometry, name: str):
    """New ``vtkMRMLScalarVolumeNode`` in ``scene`` holding ``array`` (K, J, I) on ``geometry``.

    Used for images that do not come through a storage node (DICOM series read with
    SimpleITK, 2D PNG/JPEG images). The array is copied into the node.
    """
    if tuple(array.shape) != tuple(geometry.shape):
        raise ValueError(f"array shape {array.shape} does not match geometry {geometry.shape}")
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(geometry.ijk_to_ras))
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(array))
    node.CreateDefaultDisplayNodes()
    return node


#: Colour map of uncertainty volumes (in both Slicer and slicer-core) and the uncertainty
#: below which a voxel is not drawn over the image.
UNCERTAINTY_COLOR_NODE_ID = "vtkMRMLPETProceduralColorNodePET-Heat"
UNCERTAINTY_SHOWN_FROM = 0.05


def addUncertaintyVolume(scene, uncertainty: np.ndarray, geometry: Geometry, name: str):
    """New scalar volume node of a float uncertainty map `(K, J, I)` in [0, 1] on
    ``geometry``, displayed with a heat colour map over the full [0, 1] range and transparent
    below ``UNCERTAINTY_SHOWN_FROM`` (ready to show as the slice views' foreground layer)."""
    node = addVolumeFromArray(scene, uncertainty.astype(np.float32, copy=False), geometry, name)
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(UNCERTAINTY_COLOR_NODE_ID)
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 1.0)
    display.SetLowerThreshold(UNCERTAINTY_SHOWN_FROM)
    display.SetUpperThreshold(1.0)
    display.ApplyThresholdOn()
    return node


def describeVolume(volumeNode, seriesDescription: str | None = None) -> Candidate:
    """Matching ``Candidate`` for a volume node (``unetseg.engine.matching``): its name, its
    storage file name and SeriesDescription; the candidate's item is the node.

    The SeriesDescription is ``seriesDescription`` if given, else the node attribute
    ``DICOM.SeriesDescription``. (Slicer's DICOM database is not reachable without the app;
    callers that have it can pass the value.)
    """
    storageNode = volumeNode.GetStorageNode()
    fileName = storageNode.GetFileName() if storageNode is not None else None
    if seriesDescription is None:
        seriesDescription = volumeNode.GetAttribute(SERIES_DESCRIPTION_ATTRIBUTE) or ""
    return Candidate(
        name=volumeNode.GetName() or "",
        file_name=Path(fileName).name if fileName else "",
        series_description=seriesDescription,
        item=volumeNode,
    )
