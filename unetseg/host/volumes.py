"""Volume nodes to numpy arrays plus engine geometry.

Works in the Slicer app and on ``slicer-core``: only the node passed in and ``slicer.util``
array helpers are used.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk

from unetseg.engine.geometry import Geometry

# ITU-R BT.601 luma weights (as Pillow's ``convert("L")``); grey RGB (R = G = B) is unchanged.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])


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
