"""Logic base class of the UNetSeg modules, usable without the GUI.

Example (Slicer Python console or ``Slicer --no-main-window --python-script``)::

    from BrainMetSeg import BrainMetSegLogic
    result = BrainMetSegLogic().run("brain-tumor-mri", {"t1c": t1cNode, "flair": flairNode})
    print(result.statistics["segments"])

The engine packages (torch, jsonschema) are imported when models are listed or run, not when the
module is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic

from unetseg.gui.modelCatalog import ModelFilter, latestVersions
from unetseg.gui.parameters import SegmentationParameterNode

if TYPE_CHECKING:
    from typing import Unpack

    from unetseg.engine.inference import CancelToken
    from unetseg.engine.manifest import ModelPackageError
    from unetseg.engine.options import SegmentOptions
    from unetseg.engine.package import ModelPackage
    from unetseg.host.logic import RunOutput, SegmentationJob, SegmentationResult


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
        from unetseg.engine.registry import list_models

        found = list_models(_searchPaths(extraFolders), errors)
        return latestVersions(self.modelFilter.select(found))

    def run(
        self,
        model: ModelPackage | str,
        inputNodes: Mapping[str, Any],
        options: SegmentOptions | None = None,
        *,
        cancelToken: CancelToken | None = None,
        extraFolders: Sequence[str | os.PathLike[str]] = (),
        **output: Unpack[RunOutput],
    ) -> SegmentationResult:
        """Segment volume nodes of ``slicer.mrmlScene`` with a model, now (batch scripts).

        Args:
            model: a model package, or a model id (optionally ``id@version``) or folder, looked
                up in the default model folders and ``extraFolders``.
            inputNodes: manifest input name -> ``vtkMRMLScalarVolumeNode`` (None for a missing
                optional input).
            options: how to run the model (``SegmentOptions()`` when None).
            cancelToken: ``unetseg.engine.inference.CancelToken`` to stop the run.
            extraFolders: more folders to look up ``model`` in.
            output: ``outputSegmentationNode`` (None creates one), ``replaceModelSegments``,
                ``segmentationName``, ``progress`` (see ``unetseg.host.logic.RunOutput``).

        See ``unetseg.host.logic.SegmentationLogic.run`` for errors raised.
        """
        return self._hostLogic().run(
            self._package(model, extraFolders),
            inputNodes,
            options,
            cancelToken=cancelToken,
            **output,
        )

    def start(
        self,
        model: ModelPackage | str,
        inputNodes: Mapping[str, Any],
        options: SegmentOptions | None = None,
        *,
        extraFolders: Sequence[str | os.PathLike[str]] = (),
        **output: Unpack[RunOutput],
    ) -> SegmentationJob:
        """As ``run``, on a worker thread (GUI): poll ``isDone()``, then call ``finish()``
        on this thread. See ``unetseg.host.logic.SegmentationLogic.start``."""
        return self._hostLogic().start(
            self._package(model, extraFolders), inputNodes, options, **output
        )

    @staticmethod
    def _package(
        model: ModelPackage | str, extraFolders: Sequence[str | os.PathLike[str]]
    ) -> ModelPackage:
        from unetseg.engine.registry import resolve_model

        if not isinstance(model, str):
            return model
        return resolve_model(model, _searchPaths(extraFolders))

    def _hostLogic(self):
        from unetseg.host.logic import SegmentationLogic

        if self._segmentationLogic is None:
            # Kept between runs: it caches the loaded networks.
            self._segmentationLogic = SegmentationLogic(slicer.mrmlScene)
        return self._segmentationLogic


def _searchPaths(extraFolders: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The default model folders, then ``extraFolders``."""
    from unetseg.engine.registry import default_search_paths

    return [*default_search_paths(), *(Path(folder) for folder in extraFolders)]
