"""Writing a model's label map into a segmentation node.

One segment per manifest label, with the model's names, exact colours and DICOM terminology,
reference geometry for DICOM SEG export, and subject hierarchy placement. Works in the Slicer
app and on ``slicer-core`` (scene passed in, module logics called statically).

Segment IDs are stable: ``<modelId>_<label name slug>`` (``metastasis`` for "Metastasis", or
``brainmet-4seq_metastasis`` with ``modelId="brainmet-4seq"``). Re-running a model therefore
finds its own segments again, and segments added by the user (Slicer IDs like ``Segment_1``)
never collide with them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from unetseg.engine.manifest import LabelSpec
from unetseg.host.scene_io import uniqueNodeName

TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
_BINARY_LABELMAP = "Binary labelmap"


class SegmentationExistsError(RuntimeError):
    """The target segmentation already has segments and replacing them was not allowed."""


def segmentId(labelSpec: LabelSpec, modelId: str | None = None) -> str:
    """Stable segment ID of a label: ``[<modelId>_]<slug of the label name>``."""
    slug = re.sub(r"[^0-9a-z]+", "_", labelSpec.name.lower()).strip("_")
    slug = slug or f"label_{labelSpec.value}"
    return f"{modelId}_{slug}" if modelId else slug


def terminologyEntryString(terminology: Mapping[str, Mapping[str, str]]) -> str:
    """Slicer ``TerminologyEntry`` tag string for a manifest terminology dict.

    ``terminology`` has code triples ``{"scheme", "value", "meaning"}`` under ``category``,
    ``type`` and optionally ``type_modifier``, ``anatomic_region``,
    ``anatomic_region_modifier``. Serialised by Slicer's terminologies logic in the DICOM
    master-list contexts, e.g. ``Segmentation category and type - DICOM master list
    ~SCT^49755003^Morphologically Altered Structure~SCT^14799000^Neoplasm, Secondary~^^
    ~Anatomic codes - DICOM master list~SCT^12738006^Brain~^^``.
    """

    def code(key: str) -> tuple[str, str, str]:
        entry = terminology.get(key) or {}
        return (entry.get("value", ""), entry.get("scheme", ""), entry.get("meaning", ""))

    return slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(
        TERMINOLOGY_CONTEXT,
        *code("category"),
        *code("type"),
        *code("type_modifier"),
        ANATOMIC_CONTEXT,
        *code("anatomic_region"),
        *code("anatomic_region_modifier"),
    )


def _volumeShape(volumeNode) -> tuple[int, int, int]:
    imageData = volumeNode.GetImageData()
    if imageData is None:
        raise ValueError(f"Reference volume '{volumeNode.GetName()}' has no image data")
    i, j, k = imageData.GetDimensions()
    return (k, j, i)


def _checkedLabels(labels: np.ndarray, shape: tuple[int, int, int], values: set[int]) -> np.ndarray:
    """Validated ``labels`` as a C-contiguous uint8/uint16 (K, J, I) array (no copy if it is)."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and shape[0] == 1:
        labels = labels[np.newaxis]
    if labels.shape != shape:
        raise ValueError(f"Label map shape {labels.shape} differs from the reference {shape}")
    if labels.dtype.kind not in "ui":
        raise TypeError(f"Label map must be an integer array, got {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() > np.iinfo(np.uint16).max):
        raise ValueError("Label values must be in 0..65535")
    present = set(np.flatnonzero(np.bincount(labels.ravel())).tolist()) - {0}
    unknown = sorted(present - values)
    if unknown:
        raise ValueError(f"Label map contains values {unknown} that no label spec describes")
    if labels.dtype not in (np.uint8, np.uint16):
        labels = labels.astype(np.uint8 if max(values, default=0) < 256 else np.uint16)
    return np.ascontiguousarray(labels)


def _orientedImage(labels: np.ndarray, volumeNode):
    """``vtkOrientedImageData`` holding a copy of ``labels`` in ``volumeNode``'s local geometry."""
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(labels.shape[2], labels.shape[1], labels.shape[0])
    vtkType = vtk.VTK_UNSIGNED_CHAR if labels.dtype == np.uint8 else vtk.VTK_UNSIGNED_SHORT
    scalars = numpy_support.numpy_to_vtk(labels.ravel(), deep=True, array_type=vtkType)
    image.GetPointData().SetScalars(scalars)
    ijkToRas = vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(ijkToRas)
    image.SetGeometryFromImageToWorldMatrix(ijkToRas)
    return image


def _requireSegmentationsLogic() -> None:
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    if factory.ConstructRepresentationObjectByRepresentation(_BINARY_LABELMAP) is None:
        raise RuntimeError(
            "Segmentation converters are not registered: create the scene with "
            "unetseg.host.scene_io.newScene() (or register a vtkSlicerSegmentationsModuleLogic)"
        )


def _placeInStudy(scene, segmentationNode, referenceVolumeNode) -> None:
    """Put the segmentation under the reference volume's study, when it has one."""
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    referenceItem = shNode.GetItemByDataNode(referenceVolumeNode)
    if not referenceItem:
        return
    studyLevel = slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMLevelStudy()
    studyItem = shNode.GetItemAncestorAtLevel(referenceItem, studyLevel)
    if not studyItem:
        return
    segmentationItem = shNode.GetItemByDataNode(segmentationNode)
    if segmentationItem:
        shNode.SetItemParent(segmentationItem, studyItem)
    else:
        shNode.CreateItem(studyItem, segmentationNode)


def _targetNode(scene, segmentationNode, referenceVolumeNode, name, replaceModelSegments):
    if segmentationNode is not None:
        segments = segmentationNode.GetSegmentation().GetNumberOfSegments()
        if segments and not replaceModelSegments:
            raise SegmentationExistsError(
                f"Segmentation '{segmentationNode.GetName()}' already has {segments} segment(s), "
                "possibly edited: choose a new output segmentation, or allow replacing the "
                "model's segments (segments you added are kept)"
            )
        return segmentationNode
    baseName = name or f"{referenceVolumeNode.GetName()} segmentation"
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", uniqueNodeName(scene, baseName))
    node.CreateDefaultDisplayNodes()
    node.SetAndObserveTransformNodeID(referenceVolumeNode.GetTransformNodeID())
    return node


def writeLabelmapToSegmentation(
    scene,
    labels: np.ndarray,
    referenceVolumeNode,
    labelSpecs: Sequence[LabelSpec],
    segmentationNode=None,
    name: str | None = None,
    replaceModelSegments: bool = False,
    modelId: str | None = None,
):
    """Store a label map as segments of a (new) segmentation node.

    Args:
        scene: the MRML scene (created with ``newScene()`` when outside the Slicer app).
        labels: label map (K, J, I) on the reference volume's voxel grid (``(J, I)`` accepted
            for single-slice references); integer, normally uint8/uint16. Every non-zero value
            must have a label spec.
        referenceVolumeNode: the volume the labels were computed for. Its local IJKToRAS is
            used, and a new segmentation is put under the same parent transform, so the
            segments stay aligned when the transform changes.
        labelSpecs: the model's ``LabelSpec`` objects (``ModelPackage.labels``); one segment
            each, in this order, empty if the label is absent (value 0 is ignored).
        segmentationNode: existing node to write into; default: a new node per run.
        name: name of a new node, e.g. ``"<volume name> - <model title>"``; made unique in the
            scene. Ignored for an existing node.
        replaceModelSegments: for an existing node with segments: replace the segments with
            this model's IDs (see module doc) and keep all others untouched. If False, an
            existing node with segments raises ``SegmentationExistsError``.
        modelId: manifest ``id``, prefixed to segment IDs.

    Returns:
        The segmentation node, with reference image geometry set from the reference volume,
        and placed under the reference volume's subject hierarchy study if it has one (volumes
        loaded from DICOM).

    Segment colours are set directly (0-255 values stored as ``c / 255``, no colour table
    rounding); names and colours are marked as not auto-generated. The label map is imported
    in one call as a shared labelmap layer whose label values are the manifest values.
    """
    specs = [spec for spec in labelSpecs if spec.value != 0]
    ids = [segmentId(spec, modelId) for spec in specs]
    values = [spec.value for spec in specs]
    if len(set(ids)) != len(ids) or len(set(values)) != len(values):
        raise ValueError(f"Label specs need unique values and names, got {values} / {ids}")
    if any(not 0 < value <= np.iinfo(np.uint16).max for value in values):
        raise ValueError(f"Label values must be in 1..65535, got {values}")
    labels = _checkedLabels(labels, _volumeShape(referenceVolumeNode), set(values))
    _requireSegmentationsLogic()

    node = _targetNode(scene, segmentationNode, referenceVolumeNode, name, replaceModelSegments)
    # Position v - 1 of the ID array receives label value v; empty IDs are skipped.
    idByValue = vtk.vtkStringArray()
    idByValue.SetNumberOfValues(max(values, default=0))
    for value, segmentIdentifier in zip(values, ids, strict=True):
        idByValue.SetValue(value - 1, segmentIdentifier)
    toSegmentation = None
    if node.GetTransformNodeID() != referenceVolumeNode.GetTransformNodeID():
        toSegmentation = vtk.vtkGeneralTransform()
        slicer.vtkSlicerSegmentationsModuleLogic.GetTransformBetweenRepresentationAndSegmentation(
            referenceVolumeNode, node, toSegmentation
        )

    with slicer.util.NodeModify(node):
        node.SetReferenceImageGeometryParameterFromVolumeNode(referenceVolumeNode)
        imported = slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(
            _orientedImage(labels, referenceVolumeNode), node, idByValue, toSegmentation
        )
        if not imported:
            raise RuntimeError(
                f"Could not import the label map into '{node.GetName()}' (its source "
                "representation must be binary labelmap)"
            )
        segmentation = node.GetSegmentation()
        for spec, segmentIdentifier in zip(specs, ids, strict=True):
            segment = segmentation.GetSegment(segmentIdentifier)
            segment.SetName(spec.name)
            segment.SetNameAutoGenerated(False)
            segment.SetColor(*spec.color_float)
            segment.SetColorAutoGenerated(False)
            if spec.terminology:
                segment.SetTerminology(terminologyEntryString(spec.terminology))
    _placeInStudy(scene, node, referenceVolumeNode)
    return node
