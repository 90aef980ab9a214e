"""Reading and writing volumes and segmentations with MRML storage nodes.

Only storage nodes and module logics are used, with the scene passed in, so the same code runs
in the Slicer app and on ``slicer-core`` (where ``slicer.util.loadVolume`` and ``saveNode`` need
the missing ``slicer.app``).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from pathlib import Path

import slicer
import vtk

from unetseg.atomic import atomic_path
from unetseg.host.image_files import DamagedImageError, checkImageFile, checkNrrdFile

# Logics registered by newScene(), kept alive as long as their scene: a deleted colour logic
# removes the default colour tables from the scene.
_sceneLogics: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class VolumeReadError(OSError):
    """A file could not be read as a volume or segmentation (missing, corrupt, unsupported)."""


class SegmentationWriteError(OSError):
    """A segmentation could not be written."""


def newScene():
    """New ``vtkMRMLScene`` with the logics that headless code needs.

    Registers the colour logic (default colour tables, used by volume display nodes), the
    subject hierarchy logic and the segmentations logic (converter rules, DICOM reference
    tracking); they stay alive while the scene object does.

    ``slicer.mrmlScene``: without the Slicer app (``slicer-core``) it is set to the new scene so
    that ``slicer.util`` helpers which look nodes up by name work; inside the app it is never
    replaced (the app's scene stays global). UNetSeg's host functions never rely on it: they take
    the scene as an argument. Inside the app, pass ``slicer.mrmlScene`` instead of calling this.
    """
    scene = slicer.vtkMRMLScene()
    logics = (
        slicer.vtkMRMLColorLogic(),
        slicer.vtkSlicerSubjectHierarchyModuleLogic(),
        slicer.vtkSlicerSegmentationsModuleLogic(),
    )
    for logic in logics:
        logic.SetMRMLScene(scene)
    _sceneLogics[scene] = logics
    if getattr(slicer, "app", None) is None:
        slicer.mrmlScene = scene
    return scene


def uniqueNodeName(scene, baseName: str) -> str:
    """``baseName`` if no node in ``scene`` has it, else Slicer's ``GenerateUniqueName``."""
    if scene.GetFirstNodeByName(baseName) is None:
        return baseName
    return scene.GenerateUniqueName(baseName)


@contextlib.contextmanager
def _vtkErrorsSilenced() -> Iterator[None]:
    """Suppress VTK error printing; failures are reported through exceptions instead."""
    previous = vtk.vtkObject.GetGlobalWarningDisplay()
    vtk.vtkObject.GlobalWarningDisplayOff()
    try:
        yield
    finally:
        vtk.vtkObject.SetGlobalWarningDisplay(previous)


def _readWithStorageNode(scene, storageNode, dataNode, path: Path) -> str:
    """Add both nodes, read ``path``; on failure remove them and return the reader's messages."""
    storageNode.SetFileName(str(path))
    scene.AddNode(storageNode)
    scene.AddNode(dataNode)
    dataNode.SetAndObserveStorageNodeID(storageNode.GetID())
    with _vtkErrorsSilenced():
        ok = storageNode.ReadData(dataNode)
    if ok:
        return ""
    messages = storageNode.GetUserMessages().GetAllMessagesAsString().strip()
    scene.RemoveNode(dataNode)
    scene.RemoveNode(storageNode)
    return messages or "the reader gave no details"


def _existingFile(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise VolumeReadError(f"File not found: {path}")
    return path


def loadVolume(scene, path: str | Path, name: str | None = None):
    """Load one single-file volume (NIfTI, NRRD, MHA, ...) into ``scene``.

    Reads with ``vtkMRMLVolumeArchetypeStorageNode`` in single-file mode (other files in the
    folder are never read as a series). Multi-component files (RGB) are read into a
    ``vtkMRMLVectorVolumeNode`` (a subclass of ``vtkMRMLScalarVolumeNode``). Default display
    nodes are created.

    Args:
        scene: the MRML scene to add the nodes to.
        path: file to read.
        name: node name; default: the file name without extension. Made unique in the scene.

    Returns:
        The new volume node (with its storage node).

    Raises:
        VolumeReadError: file missing, unreadable, corrupt or not an image; the message names
            the file and includes the reader's details.
        DamagedImageError: a truncated NIfTI file or one holding NaN/infinite values (which
            Slicer's reader would silently turn into zeros; see ``image_files``).
    """
    path = _existingFile(path)
    checkImageFile(path)
    failures = []
    for nodeClass in (slicer.vtkMRMLScalarVolumeNode, slicer.vtkMRMLVectorVolumeNode):
        storageNode = slicer.vtkMRMLVolumeArchetypeStorageNode()
        storageNode.SetSingleFile(1)
        volumeNode = nodeClass()
        volumeNode.SetName(
            uniqueNodeName(scene, name or storageNode.GetFileNameWithoutExtension(str(path)))
        )
        messages = _readWithStorageNode(scene, storageNode, volumeNode, path)
        if not messages:
            volumeNode.CreateDefaultDisplayNodes()
            return volumeNode
        failures.append(messages)
    raise VolumeReadError(f"Cannot read '{path}' as a volume:\n{failures[0]}")


def loadSegmentation(scene, path: str | Path, name: str | None = None):
    """Load a segmentation file (``.seg.nrrd`` or another format its storage node reads).

    Same as ``vtkSlicerSegmentationsModuleLogic.LoadSegmentationFromFile`` but without needing
    the module's logic instance (not reachable without ``slicer.modules``).

    Returns:
        The new ``vtkMRMLSegmentationNode`` with display and storage nodes.

    Raises:
        VolumeReadError: file missing or not readable as a segmentation.
    """
    path = _existingFile(path)
    storageNode = slicer.vtkMRMLSegmentationStorageNode()
    segmentationNode = slicer.vtkMRMLSegmentationNode()
    baseName = name or storageNode.GetFileNameWithoutExtension(str(path))
    segmentationNode.SetName(uniqueNodeName(scene, baseName))
    messages = _readWithStorageNode(scene, storageNode, segmentationNode, path)
    if messages:
        raise VolumeReadError(f"Cannot read '{path}' as a segmentation:\n{messages}")
    segmentationNode.CreateDefaultDisplayNodes()
    return segmentationNode


def saveSegmentation(segmentationNode, path: str | Path) -> Path:
    """Write ``segmentationNode`` to ``path`` (``.seg.nrrd``) atomically with its storage node.

    Uses the node's storage node (adding a default one if it has none), so the node remembers
    the file as after Slicer's "Save". Voxels are written in the reference geometry extent
    (no cropping), with names, colours, label values, terminology and layers. Creates the
    parent folder if needed. The file is written under a temporary name in the same folder and
    renamed into place when complete (``unetseg.atomic``): a failure leaves an existing file
    as it was.

    Returns:
        The path written.

    Raises:
        SegmentationWriteError: the node is not in a scene, the extension is not supported or
            writing failed (disk full, no permission).
    """
    path = _segmentationPath(path)
    with atomic_path(path) as temporary:
        writeSegmentationFile(segmentationNode, temporary, path)
    segmentationNode.GetStorageNode().SetFileName(str(path))
    return path


def writeSegmentationFile(segmentationNode, path: str | Path, target: str | Path = "") -> None:
    """``saveSegmentation`` without the atomic rename: writes ``path`` itself. For callers that
    stage several files and rename them together (``unetseg.atomic.atomic_path``): ``path`` is
    then the temporary file and ``target`` the final path, named in error messages."""
    path = _segmentationPath(path)
    target = target or path
    if segmentationNode.GetScene() is None:
        raise SegmentationWriteError(
            f"Segmentation '{segmentationNode.GetName()}' is not in a scene"
        )
    storageNode = segmentationNode.GetStorageNode()
    if storageNode is None:
        segmentationNode.AddDefaultStorageNode()
        storageNode = segmentationNode.GetStorageNode()
    storageNode.SetFileName(str(path))
    with _vtkErrorsSilenced():
        ok = storageNode.WriteData(segmentationNode)
    if not ok:
        messages = storageNode.GetUserMessages().GetAllMessagesAsString().strip()
        raise SegmentationWriteError(f"Cannot write '{target}':\n{messages or 'no details'}")
    try:
        checkNrrdFile(path)  # the writer reports success on a full disk
    except DamagedImageError as error:
        raise SegmentationWriteError(
            f"Writing '{target}' failed (disk full or file size limit?): {error}"
        ) from None


def _segmentationPath(path: str | Path) -> Path:
    path = Path(path)
    if not path.name.lower().endswith(".seg.nrrd"):
        raise SegmentationWriteError(f"Segmentation files must end with .seg.nrrd: {path}")
    return path
