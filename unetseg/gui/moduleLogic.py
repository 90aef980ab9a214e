"""Logic base class of the UNetSeg modules, usable without the GUI.

Example (Slicer Python console or ``Slicer --no-main-window --python-script``)::

    from BrainMetSeg import BrainMetSegLogic
    result = BrainMetSegLogic().process("brainmet-4seq", {"t1c": t1cNode, "flair": flairNode})
    print(result.statistics["segments"])

The engine packages (torch, jsonschema) are imported when models are listed or run, not when the
module is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic

from unetseg.gui.modelCatalog import ModelFilter, latestVersions
from unetseg.gui.parameters import SegmentationParameterNode

if TYPE_CHECKING:
    from unetseg.engine.inference import CancelToken
    from unetseg.engine.manifest import ModelPackageError
    from unetseg.engine.package import ModelPackage
    from unetseg.host.logic import SegmentationJob, SegmentationResult


class SegmentationModuleLogic(ScriptedLoadableModuleLogic):
    """Lists a module's models and runs them on ``slicer.mrmlScene``.

    Subclasses (one per module) set ``modelFilter``.
    """

    modelFilter: ClassVar[ModelFilter]

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._segmentationLogic = None

    def getParameterNode(self) -> SegmentationParameterNode:
        return SegmentationParameterNode(super().getParameterNode())

    def models(
        self,
        extraFolders: Sequence[str | os.PathLike[str]] = (),
        errors: list[ModelPackageError] | None = None,
    ) -> list[ModelPackage]:
        """Highest version of each model this module offers, by id.

        Searches the default model folders (bundled models, ``$UNETSEG_MODEL_PATH``,
        ``~/.unetseg/models``) and then ``extraFolders``; invalid packages are appended to
        ``errors`` (logged when None).
        """
        from unetseg.engine.registry import default_search_paths, list_models

        searchPaths = [*default_search_paths(), *(Path(folder) for folder in extraFolders)]
        return latestVersions(self.modelFilter.select(list_models(searchPaths, errors)))

    def process(
        self,
        model: ModelPackage | str,
        inputNodes: Mapping[str, Any],
        *,
        outputSegmentationNode=None,
        replaceModelSegments: bool = False,
        device: str = "auto",
        overlap: float | None = None,
        fast: bool = False,
        progress: Callable[[int, int], None] | None = None,
        cancelToken: CancelToken | None = None,
        waitForCompletion: bool = True,
        segmentationName: str | None = None,
        extraFolders: Sequence[str | os.PathLike[str]] = (),
    ) -> SegmentationResult | SegmentationJob:
        """Segment volume nodes of ``slicer.mrmlScene`` with a model.

        Args:
            model: a model package, or a model id (optionally ``id@version``) or folder, looked
                up in the default model folders and ``extraFolders``.
            inputNodes: manifest input name -> ``vtkMRMLScalarVolumeNode`` (None for a missing
                optional input).
            outputSegmentationNode: write into this segmentation; None creates one.
            replaceModelSegments: allow replacing this model's segments in it.
            device: "auto", "cpu" or "cuda".
            overlap: sliding-window overlap; None uses the model's.
            fast: faster but approximate (fewest windows covering the body/head box, CPU bf16).
            progress: ``progress(doneWindows, totalWindows)``, called from the engine thread.
            cancelToken: ``unetseg.engine.inference.CancelToken`` to stop a blocking run.
            waitForCompletion: True returns a ``SegmentationResult``; False a started
                ``SegmentationJob`` (poll ``isDone()``, then ``finish()`` on this thread).
            segmentationName: name of a new segmentation; default "<reference> - <model>".

        See ``unetseg.host.logic.SegmentationLogic.process`` for errors raised.
        """
        from unetseg.engine.registry import default_search_paths, resolve_model
        from unetseg.host.logic import SegmentationLogic

        if isinstance(model, str):
            searchPaths = [*default_search_paths(), *(Path(folder) for folder in extraFolders)]
            model = resolve_model(model, searchPaths)
        if self._segmentationLogic is None:
            # Kept between runs: it caches the loaded networks.
            self._segmentationLogic = SegmentationLogic(slicer.mrmlScene)
        return self._segmentationLogic.process(
            model,
            inputNodes,
            outputSegmentationNode=outputSegmentationNode,
            replaceModelSegments=replaceModelSegments,
            device=device,
            overlap=overlap,
            fast=fast,
            progress=progress,
            cancelToken=cancelToken,
            waitForCompletion=waitForCompletion,
            segmentationName=segmentationName,
        )
